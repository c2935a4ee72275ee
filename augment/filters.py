"""Dedup and decontamination over the persisted candidates, streamed block by block.

Runs on the driver after generation, over the rows that passed verification, in a fixed order
(strategy, block, row), so the result is the same whatever order the blocks finished in.
Memory holds indexes (fingerprints, MinHash sketches, n-gram hashes), never the rows.

For each row, in this order:

1. ``duplicate``: its normalized input equals a seed row's or an earlier kept row's
   (``dedup.text_fingerprint``; the input is the prompt, with the context when the task has one,
   so one SQL question on two schemas is two rows).
2. ``contaminated``: its prompt shares a word n-gram (13 by default) with a valid or test input,
   or is a MinHash near duplicate of a test input (``decontam``). Checked before the
   near-duplicate index, so that a contaminated row never shadows a clean one.
3. ``near_duplicate``: MinHash LSH near duplicate (estimated Jaccard of word-shingle sets at or
   above the threshold) of a seed prompt or of an earlier kept row's prompt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Iterator

import polars as pl

from augscale.augment.decontam import NgramIndex
from augscale.augment.dedup import NearDuplicateIndex, text_fingerprint

CHUNK_ROWS = 8192


@dataclass
class FilterSettings:
    """Plain settings of the filters (from the config's ``filters`` section)."""

    near_duplicate_threshold: float = 0.8
    num_perm: int = 128
    shingle_words: int = 3
    against_seeds: bool = True
    decontam_ngram: int = 13
    decontam_near_threshold: float | None = 0.8


@dataclass
class FilterResult:
    """``rejected``: row id -> reason; ``contaminated_by``: counts per decontamination rule."""

    rejected: dict[str, str] = field(default_factory=dict)
    contaminated_by: Counter = field(default_factory=Counter)


def exact_key(prompt: str, context: str | None) -> bytes:
    """The fingerprint exact dedup compares: the normalized prompt, with the context if any."""
    return text_fingerprint(prompt if not context else f"{context}\n{prompt}")


def _chunks(frame: pl.LazyFrame, columns: list[str]) -> Iterator[pl.DataFrame]:
    """A lazy frame's rows in chunks of :data:`CHUNK_ROWS` (the whole frame is never collected)."""
    offset = 0
    while True:
        chunk = frame.slice(offset, CHUNK_ROWS).select(columns).collect()
        if chunk.height == 0:
            return
        yield chunk
        offset += chunk.height


def filter_candidates(block_files: Iterable[Path], *, seeds: pl.LazyFrame, eval_prompts: list[str],
                      test_prompts: list[str], settings: FilterSettings,
                      target_keyed: Collection[Path] = ()) -> FilterResult:
    """Reject duplicates, contaminated rows and near duplicates among the verified candidates.

    Args:
        block_files: the block files, in the order rows are visited (earlier rows win).
        seeds: the seed rows (columns ``prompt``, ``context``); new rows must differ from them.
        eval_prompts: valid and test inputs (the n-gram rule).
        test_prompts: test inputs (the near-duplicate-of-test rule).
        settings: thresholds and sizes.
        target_keyed: block files of strategies that keep the seeds' inputs (``new_targets``):
            their rows are duplicates only with the same input and target, and are not
            near-duplicate checked on their input.

    Returns:
        The rejected row ids with their reason; rows not in it pass.
    """
    s = settings
    result = FilterResult()
    fingerprints: set[bytes] = set()
    near = NearDuplicateIndex(threshold=s.near_duplicate_threshold, num_perm=s.num_perm, ngram=s.shingle_words)
    for chunk in _chunks(seeds, ["id", "prompt", "context"]):
        prompts, contexts = chunk["prompt"].to_list(), chunk["context"].to_list()
        fingerprints.update(exact_key(p, c) for p, c in zip(prompts, contexts))
        if s.against_seeds:
            near.add_many([f"seed:{i}" for i in chunk["id"].to_list()], prompts)
    ngrams = NgramIndex(eval_prompts, n=s.decontam_ngram)
    near_test = None
    if s.decontam_near_threshold is not None and test_prompts:
        near_test = NearDuplicateIndex(threshold=s.decontam_near_threshold, num_perm=s.num_perm, ngram=s.shingle_words)
        near_test.add_many([str(i) for i in range(len(test_prompts))], test_prompts)

    for path in block_files:
        rows = pl.scan_parquet(path).filter(pl.col("reject").is_null())
        keyed = path in target_keyed
        for chunk in _chunks(rows, ["id", "prompt", "context", "target"]):
            clean_ids, clean_prompts = [], []
            for rid, prompt, context, target in zip(chunk["id"], chunk["prompt"], chunk["context"], chunk["target"]):
                key = exact_key(f"{prompt}\n{target}" if keyed else prompt, context)
                if key in fingerprints:
                    result.rejected[rid] = "duplicate"
                    continue
                fingerprints.add(key)
                if ngrams.contaminated(prompt):
                    result.rejected[rid] = "contaminated"
                    result.contaminated_by["ngram_overlap"] += 1
                    continue
                clean_ids.append(rid)
                clean_prompts.append(prompt)
            if near_test is not None and clean_ids:
                hits = near_test.query_many(clean_prompts)
                keep = [(i, p) for i, p, h in zip(clean_ids, clean_prompts, hits) if not h]
                for rid, hit in zip(clean_ids, hits):
                    if hit:
                        result.rejected[rid] = "contaminated"
                        result.contaminated_by["near_duplicate_of_test"] += 1
                clean_ids, clean_prompts = [i for i, _ in keep], [p for _, p in keep]
            for rid in near.add_unique(clean_ids, clean_prompts) if not keyed else ():
                result.rejected[rid] = "near_duplicate"
    return result
