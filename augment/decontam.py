"""Test-set decontamination of augmented training rows.

A training row is contaminated when its input

- shares any word 13-gram with an evaluation input (valid or test), after
  ``normalize_text``: the GPT-3 (Brown et al. 2020, appendix C) and NeMo Curator
  rule. A text shorter than ``n`` words counts as one n-gram, the whole text, so a
  short evaluation question copied verbatim is still caught; or
- is a MinHash near duplicate of an evaluation input (``NearDuplicateIndex``),
  which catches a short question with a word or two changed, where no 13-gram
  survives.

N-grams are kept as 64-bit hashes in a sorted array (8 bytes each: the GSM8k test
split is ~46,000 of them). A word hashes to the first 8 bytes of its blake2b, and
an n-gram to the polynomial ``sum(h[i] * M**(n-1-i)) mod 2**64`` of its words'
hashes (``M`` odd), computed for a whole batch of rows at once with numpy. Both
are stable across processes, unlike Python's ``hash`` of a string, which is salted
per process: an index pickled to a Ray worker would silently stop matching.
Collisions: with random word hashes and ``M`` odd, two different n-grams collide
with probability 2**-64.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from augscale.augment.dedup import NearDuplicateIndex, normalized_words, word_ngrams

NGRAM_OVERLAP = "ngram_overlap"
NEAR_DUPLICATE_OF_TEST = "near_duplicate_of_test"

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it is a bijection mod 2**64
_BATCH_ROWS = 8192


class _WordHashes(dict):
    """word -> 64-bit blake2b, filled on first use; one per batch keeps memory bounded."""

    def __missing__(self, word: str) -> int:
        value = self[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return value


def ngram_hashes(word_lists: Sequence[Sequence[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word n-gram of every row, in order.

    A row shorter than ``n`` words gives one hash, of the whole row; an empty row
    gives none. Window ``j`` of a row is ``word_ngrams(words, n)[j]``.

    Returns:
        ``(hashes, rows)``: (W,) uint64 n-gram hashes and (W,) int64 row indexes,
        W = total windows.
    """
    lengths = np.fromiter(map(len, word_lists), np.int64, len(word_lists))
    cache = _WordHashes()
    words = itertools.chain.from_iterable(word_lists)
    flat = np.fromiter(map(cache.__getitem__, words), np.uint64, int(lengths.sum()))  # (total words,)
    windows = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))  # per row
    rows = np.repeat(np.arange(len(word_lists)), windows)  # (W,)
    first_window = np.cumsum(windows) - windows
    row_start = np.cumsum(lengths) - lengths
    starts = np.arange(len(rows)) - first_window[rows] + row_start[rows]  # (W,) first word of each window
    width = np.minimum(lengths, n)[rows]  # (W,) n, or the whole length of a short row
    padded = np.concatenate([flat, np.zeros(n, np.uint64)])
    hashes = np.zeros(len(rows), np.uint64)
    for k in range(n):  # uint64 arithmetic wraps: mod 2**64
        hashes = np.where(k < width, hashes * _MIX + padded[starts + k], hashes)
    return hashes, rows


class NgramIndex:
    """The word n-grams of evaluation texts, for overlap checks.

    Example:
        >>> index = NgramIndex(test_questions, n=13)
        >>> index.contaminated(row["prompt"])
        False

    Args:
        texts: evaluation inputs (valid and test).
        n: words per n-gram; 13 as in GPT-3.

    Raises:
        ValueError: if ``n`` < 1.
    """

    def __init__(self, texts: Iterable[str], n: int = 13):
        if n < 1:
            raise ValueError(f"n must be >= 1 word; got {n}. 13 is the GPT-3 / NeMo Curator value.")
        self.n = n
        hashes, _ = ngram_hashes([normalized_words(t) for t in texts], n)
        self._hashes = np.unique(hashes)  # sorted, for searchsorted

    def __len__(self) -> int:
        return len(self._hashes)

    def _found(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self._hashes):
            return np.zeros(len(hashes), bool)
        at = np.minimum(np.searchsorted(self._hashes, hashes), len(self._hashes) - 1)
        return self._hashes[at] == hashes

    def contaminated_many(self, texts: Sequence[str]) -> list[bool]:
        """``contaminated`` for a batch of texts, vectorized."""
        hashes, rows = ngram_hashes([normalized_words(t) for t in texts], self.n)
        flags = np.zeros(len(texts), bool)
        flags[rows[self._found(hashes)]] = True
        return flags.tolist()

    def contaminated(self, text: str) -> bool:
        """Whether ``text`` shares an n-gram with any evaluation text."""
        return self.contaminated_many([text])[0]

    def matches(self, text: str) -> list[str]:
        """The n-grams of ``text`` (normalized, in order) found in the evaluation texts: evidence."""
        words = normalized_words(text)
        hashes, _ = ngram_hashes([words], self.n)
        return [g for g, found in zip(word_ngrams(words, self.n), self._found(hashes)) if found]


def find_contaminated(
    ids: Sequence[str],
    texts: Sequence[str],
    eval_texts: Sequence[str],
    *,
    n: int = 13,
    near_threshold: float | None = 0.8,
    num_perm: int = 128,
    ngram: int = 3,
    seed: int = 1,
) -> dict[str, str]:
    """Rows that overlap the evaluation inputs, with the reason.

    Args:
        ids: row ids.
        texts: row inputs, aligned with ``ids``.
        eval_texts: valid and test inputs.
        n: n-gram length of the overlap rule.
        near_threshold: MinHash Jaccard threshold of the near-duplicate rule;
            None turns that rule off.
        num_perm, ngram, seed: ``NearDuplicateIndex`` settings.

    Returns:
        ``{id: reason}`` with reason ``"ngram_overlap"`` (checked first) or
        ``"near_duplicate_of_test"``; rows not in it are clean. Example:
        ``{"gsm8k-train-12-numsub-0": "ngram_overlap"}``.

    Raises:
        ValueError: if ``ids`` and ``texts`` differ in length.
    """
    if len(ids) != len(texts):
        raise ValueError(f"ids and texts must have the same length; got {len(ids)} and {len(texts)}.")
    ngrams = NgramIndex(eval_texts, n=n)
    near = None
    if near_threshold is not None:
        near = NearDuplicateIndex(threshold=near_threshold, num_perm=num_perm, ngram=ngram, seed=seed)
        near.add_many([f"eval[{i}]" for i in range(len(eval_texts))], eval_texts)
    reasons: dict[str, str] = {}
    for lo in range(0, len(ids), _BATCH_ROWS):
        batch_ids, batch_texts = list(ids[lo : lo + _BATCH_ROWS]), list(texts[lo : lo + _BATCH_ROWS])
        overlap = ngrams.contaminated_many(batch_texts)
        reasons.update((i, NGRAM_OVERLAP) for i, hit in zip(batch_ids, overlap) if hit)
        if near is not None:
            rest = [(i, t) for i, t, hit in zip(batch_ids, batch_texts, overlap) if not hit]
            found = near.query_many([t for _, t in rest])
            reasons.update((i, NEAR_DUPLICATE_OF_TEST) for (i, _), hits in zip(rest, found) if hits)
    return reasons
