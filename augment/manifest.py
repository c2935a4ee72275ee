"""Cache keys, counts and the manifest of an augmented snapshot.

Keys are honest (STYLE 9): a strategy's *candidates* depend on the task and its code, the seed
rows, the strategy's code and content params, and the run's seed, so they are cached under
``generation_key``; the *snapshot* also depends on the filters, the shares, ``target_size``
and the evaluation splits, hence ``snapshot_key``. Resource-only settings (block size, actor
counts, an LLM client's concurrency) are in neither.

Counts per strategy, in the manifest (every candidate is counted once, under the first stage
that dropped it)::

    {"candidates": 22419, "verified": 17060, "accepted": 7473,
     "rejected": {"no_substitutable_number": 3273, ..., "duplicate": 3, "near_duplicate": 2004,
                  "contaminated": 12, "over_target": 7568}}
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from augscale.augment import blocks
from augscale.datasets_cache.snapshot import content_hash

# Modules whose code decides which candidates survive and are selected (part of the snapshot key).
_SELECTION_MODULES = ("augscale.augment.filters", "augscale.augment.select", "augscale.augment.dedup",
                      "augscale.augment.decontam", "augscale.augment.pipeline")


def module_hash(*names: str) -> str:
    """sha256 of the source of the named modules (the code version of a cache key)."""
    import importlib

    h = hashlib.sha256()
    for name in names:
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    return h.hexdigest()[:16]


def strategy_fingerprint(strategy_cls) -> str:
    """Hash of the code that decides a strategy's candidates: the modules of its classes (helper
    functions included), the base class's own source (not the registry around it, so that
    registering another strategy invalidates nothing), and the block runner that verifies."""
    import importlib

    from augscale.augment.strategies import Strategy

    h = hashlib.sha256()
    for cls in strategy_cls.__mro__:
        if cls is object:
            continue
        source = inspect.getsource(cls) if cls is Strategy else inspect.getsource(importlib.import_module(cls.__module__))
        h.update(source.encode())
    h.update(inspect.getsource(blocks).encode())
    return h.hexdigest()[:16]


def code_version() -> str:
    """The augment code's version: a hash of every module that decides an augmented snapshot."""
    return module_hash("augscale.augment.strategies", "augscale.augment.blocks", *_SELECTION_MODULES)


def generation_key(*, task, seeds_version: str, strategy_cls, cache_params: dict[str, Any], seed: int,
                   max_seeds: int | None) -> dict[str, Any]:
    """What one strategy's candidates depend on (their work folder is named by its hash)."""
    return {
        "task": task.name, "task_params": task.params(), "task_code": task.code_fingerprint(),
        "seeds": seeds_version, "strategy": strategy_cls.name, "params": cache_params, "seed": seed,
        "max_seeds": max_seeds,
        "code": strategy_fingerprint(strategy_cls),
    }


def snapshot_key(*, generation: dict[str, dict], shares: dict[str, float], target_size: int,
                 filters: dict[str, Any], eval_version: str, decontam_splits: list[str]) -> dict[str, Any]:
    """What an augmented snapshot depends on (its version is the hash)."""
    return {
        "generation": {k: content_hash(v, 16) for k, v in generation.items()}, "shares": shares,
        "target_size": target_size, "filters": filters, "eval": eval_version,
        "decontam_splits": sorted(decontam_splits), "code": module_hash(*_SELECTION_MODULES),
    }


def block_counts(paths: Iterable[Path]) -> tuple[int, Counter, dict[str, float], float]:
    """Candidates, rejections by reason, summed usage and generation seconds over block files."""
    paths = list(paths)
    usage: Counter = Counter()
    seconds = 0.0
    for p in paths:
        info = blocks.block_info(p)
        seconds += float(info.get("seconds", 0.0))
        usage.update({k: v for k, v in (info.get("usage") or {}).items() if isinstance(v, (int, float))})
    if not paths:
        return 0, Counter(), dict(usage), seconds
    frame = pl.scan_parquet(paths).select("reject").collect()
    reasons = Counter({r: n for r, n in frame.group_by("reject").len().iter_rows() if r is not None})
    return frame.height, reasons, dict(usage), seconds


def strategy_counts(candidates: int, reasons: Counter, filtered: Counter, over_target: int,
                    accepted: int) -> dict[str, Any]:
    """One strategy's counts for the manifest (reasons sorted by count)."""
    rejected = Counter(reasons)
    rejected.update(filtered)
    if over_target:
        rejected["over_target"] = over_target
    return {
        "candidates": candidates,
        "verified": candidates - sum(reasons.values()),
        "accepted": accepted,
        "rejected": dict(sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def count_by_strategy(files: dict[str, list[Path]], rejected: dict[str, str], selection,
                      survivors: pl.DataFrame) -> tuple[dict[str, dict], dict[str, dict], float]:
    """Counts, usage and generation seconds per strategy.

    Args:
        files: strategy -> its block files.
        rejected: row id -> the filter that rejected it (``duplicate``, ``contaminated``, ...).
        selection: the :class:`~augscale.augment.select.Selection` (``over_target``, ``taken``).
        survivors: the rows that passed the filters (``id``, ``source``).
    """
    filtered: dict[str, Counter] = {name: Counter() for name in files}
    for rid, reason in rejected.items():
        filtered[blocks.strategy_of(rid)][reason] += 1
    over: Counter = Counter()
    if selection.over_target:
        over.update(survivors.filter(pl.col("id").is_in(pl.Series(selection.over_target).implode()))["source"])
    counts, usage, seconds = {}, {}, 0.0
    for name, paths in files.items():
        n, reasons, used, secs = block_counts(paths)
        seconds += secs
        usage[name] = used
        counts[name] = strategy_counts(n, reasons, filtered[name], over[name], selection.taken.get(name, 0))
    return counts, usage, seconds


def totals(per_strategy: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The per-strategy counts summed."""
    out: dict[str, Any] = {"candidates": 0, "verified": 0, "accepted": 0}
    rejected: Counter = Counter()
    for counts in per_strategy.values():
        for k in ("candidates", "verified", "accepted"):
            out[k] += counts[k]
        rejected.update(counts["rejected"])
    out["rejected"] = dict(sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def summary(manifest: dict[str, Any], path: Path, created: bool) -> dict[str, Any]:
    """The ``--json`` summary of a run: path, version, rows, counts (from the manifest)."""
    return {
        "path": str(path), "version": manifest["version"], "task": manifest["task"], "name": manifest["name"],
        "rows": manifest["rows"]["train"], "target_size": manifest["target_size"],
        "target_reached": manifest["target_reached"], "shortfall": manifest["shortfall"],
        "created": created, "seconds": manifest["seconds"], "counts": manifest["counts"],
        "totals": manifest["totals"], "seed_snapshot": manifest["seed_snapshot"],
        **({"stopped": manifest["stopped"]} if manifest.get("stopped") else {}),
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
