"""Exact and near-duplicate removal for augmented training rows.

Two filters run before selection, both over the *input* text of a row (the GSM8k
question, the ViGGO sentence, the SQL question):

1. ``exact_duplicates``: same ``normalize_text`` output (a 128-bit blake2b of it
   is what is kept in memory).
2. ``find_near_duplicates``: MinHash LSH over word n-gram shingles of the
   normalized text. Greedy and order-deterministic: rows are visited in the order
   given; a row whose estimated Jaccard with an already *kept* row (or with one of
   the ``against_*`` rows) is >= threshold is dropped and mapped to that row;
   otherwise it is kept and indexed. Every value in the result is therefore a row
   that survives (or an ``against_*`` row), and no two kept rows are near
   duplicates of each other (up to MinHash/LSH error).

Normalization keeps digits. Number substitution is an augmentation strategy: a
variant differs from its seed only in its numbers, and it is a new problem with a
new answer. With digits stripped, every such variant would collapse onto its seed.
Even with digits kept, a variant that changes only one number of a ~45-word
question is usually (87%, table below) within Jaccard 0.8 of its seed, so callers choose
whether new rows are checked against the seed rows (pass the seeds as
``against_ids``/``against_texts``) or only among themselves.

Shingle size, measured on 1,000 GSM8k train questions (mean 46 normalized
words; share of pairs with exact shingle Jaccard >= 0.8)::

    n   1 word edited  2 edits  3 edits   all numbers changed  one number changed
    1        1.00        1.00     0.98           0.63                1.00
    2        0.99        0.84     0.50           0.21                0.99
    3        0.94        0.42     0.14           0.09                0.87
    5        0.53        0.08     0.01           0.03                0.43

(edit = a random word substituted, inserted or deleted). The default ``ngram=3``
catches copies with one edit, or a few adjacent ones, while keeping 91% of
number-substituted variants (those that change all numbers) apart from each other
and from their seed; ``ngram=2`` is the choice for more aggressive dedup of
lightly edited text, at the cost of merging more number variants. Among the 7,473
real GSM8k train questions, 3-grams at 0.8 pair only one (a true duplicate that
differs in a name).

Library: ``rensa`` 0.5 (Rust MinHash with an LSH index). On 50,000 rows of 55
words (2 cores), sketching + sequential LSH query/insert took 0.5 s with rensa
against 7.2 s with datasketch 2.0 (``MinHash.bulk`` + ``MinHashLSH``; 5.5 s with
an xxhash ``hashfunc``), though rensa ran 16 bands to datasketch's 9. Its
estimates were unbiased on sets of known Jaccard 0.3-0.9, with a spread no wider
than datasketch's. rensa's LSH returns band candidates; ``NearDuplicateIndex``
verifies each by estimated Jaccard.

Memory: one 128-value sketch plus one LSH entry per band (16 bands at the
defaults) per *indexed* row, about 2 KB: ~400 MB for 200,000 rows
(``python bench/dedup.py``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import rensa

# Sketches are computed in batches: one Rust call per batch, bounded transient memory.
_BATCH_ROWS = 8192
# LSH bands are chosen so that a pair exactly at the threshold becomes a candidate
# with at least this probability; candidates are then verified, so extra bands cost
# only time and memory, never precision.
_MIN_CANDIDATE_PROB = 0.9

# Starts with the literal comma so that the regex engine skips to commas: 5x faster
# than a leading lookbehind.
_THOUSANDS_SEP = re.compile(r",(?<=\d,)(?=\d{3}(?!\d))")
_APOSTROPHES = re.compile(r"['`\u2018\u2019]")
_NON_WORD = re.compile(r"[\W_]+")
# ASCII fast path (3x faster than the regexes): the same mapping as _APOSTROPHES + _NON_WORD.
_ASCII_TABLE = str.maketrans({c: None if c in "'`" else " " for c in map(chr, range(128)) if not c.isalnum()})


def normalize_text(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace; keep letters and digits.

    Apostrophes and thousands separators are deleted (``don't`` -> ``dont``,
    ``1,000`` -> ``1000``); every other run of non-alphanumerics becomes one space
    (``$3.50`` -> ``3 50``). Non-ASCII text is NFKC-folded first.

    Example: ``normalize_text("Weng earns $12 an hour. Isn't it 1,000?")``
    returns ``"weng earns 12 an hour isnt it 1000"``.
    """
    return " ".join(normalized_words(text))


def normalized_words(text: str) -> list[str]:
    """``normalize_text(text).split()``, without the join.

    Raises:
        TypeError: if ``text`` is not a str (a null input: drop or fill it first).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}: drop or fill null inputs before dedup")
    if "," in text:
        text = _THOUSANDS_SEP.sub("", text)
    if text.isascii():
        return text.lower().translate(_ASCII_TABLE).split()
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    return _NON_WORD.sub(" ", text).split()


def word_ngrams(words: Sequence[str], n: int) -> list[str]:
    """The word n-grams of ``words`` as space-joined strings.

    A text shorter than ``n`` words yields itself as its single n-gram, so that a
    short text can still match verbatim; an empty text yields none.
    """
    if len(words) <= n:
        return [" ".join(words)] if words else []
    return list(map(" ".join, zip(*(words[i:] for i in range(n)))))


def lsh_bands(threshold: float, num_perm: int) -> int:
    """Fewest LSH bands (a divisor of ``num_perm``) that keep recall at the threshold.

    A pair with Jaccard ``t`` shares a band with probability ``1 - (1 - t**r)**b``
    (``b`` bands of ``r = num_perm / b`` rows). Fewer bands means less memory and
    fewer false candidates; the first ``b`` reaching 0.9 at ``t = threshold`` is
    used: 16 bands of 8 at (0.8, 128), which gives 0.947 at 0.8 and 0.994 at 0.85.
    """
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        if 1.0 - (1.0 - threshold**rows) ** bands >= _MIN_CANDIDATE_PROB:
            return bands
    return num_perm


def _check_lengths(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length; got {len(a)} and {len(b)}.")


def _check_unique(name: str, keys: Iterable[str], seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    for key in keys:
        if key in seen:
            raise ValueError(f"{name} must be unique (and distinct from the against_* ids); {key!r} repeats.")
        seen.add(key)
    return seen


class NearDuplicateIndex:
    """A MinHash LSH index over normalized texts, keyed by row id.

    Texts that normalize to the empty string are never indexed and never match.

    Example:
        >>> index = NearDuplicateIndex(threshold=0.8)
        >>> index.add("seed-1", "Natalia sold clips to 48 of her friends in April ...")
        >>> index.query("natalia sold clips to 48 of her friends in april ...")
        ['seed-1']

    Args:
        threshold: estimated Jaccard similarity of shingle sets at or above which
            two texts are near duplicates.
        num_perm: MinHash permutations; best a power of two (the LSH bands must divide it).
        ngram: words per shingle (see the module docstring for the choice of 3).
        seed: MinHash seed; sketches from different seeds are not comparable.

    Raises:
        ValueError: on an out-of-range argument.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 3, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1]; got {threshold}. 0.8 is the usual near-duplicate bar.")
        if num_perm < 16:
            raise ValueError(f"num_perm must be >= 16 (128 is the default); got {num_perm}.")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1 word; got {ngram}.")
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        self.num_bands = lsh_bands(threshold, num_perm)
        self._lsh = rensa.RMinHashLSH(threshold, num_perm, self.num_bands)
        self._keys: list[str] = []  # LSH key (position) -> row id
        self._sketches: list[rensa.RMinHash] = []  # position -> sketch, to verify candidates

    def __len__(self) -> int:
        return len(self._keys)

    def _sketch_batches(self, texts: Iterable[str]) -> Iterable[list[rensa.RMinHash | None]]:
        """Yield sketches (None for an empty text) in batches of ``_BATCH_ROWS`` texts."""
        batch: list[list[str]] = []
        for text in texts:
            batch.append(word_ngrams(normalized_words(text), self.ngram))
            if len(batch) == _BATCH_ROWS:
                yield self._sketch(batch)
                batch = []
        if batch:
            yield self._sketch(batch)

    def _sketch(self, shingle_sets: list[list[str]]) -> list[rensa.RMinHash | None]:
        nonempty = [s for s in shingle_sets if s]
        sketches = iter(rensa.RMinHash.from_token_sets(nonempty, self.num_perm, self.seed))
        return [next(sketches) if s else None for s in shingle_sets]

    def _insert(self, key: str, sketch: rensa.RMinHash) -> None:
        self._lsh.insert(len(self._keys), sketch)
        self._keys.append(key)
        self._sketches.append(sketch)

    def _matches(self, sketch: rensa.RMinHash | None) -> list[str]:
        """Indexed keys with estimated Jaccard >= threshold, most similar first, then oldest."""
        if sketch is None:
            return []
        hits = []
        for pos in self._lsh.query(sketch):
            similarity = sketch.jaccard(self._sketches[pos])
            if similarity >= self.threshold:
                hits.append((-similarity, pos))
        return [self._keys[pos] for _, pos in sorted(hits)]

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key``."""
        self.add_many([key], [text])

    def add_many(self, keys: Sequence[str], texts: Sequence[str]) -> None:
        """Index many texts (e.g. the seed rows); batched sketching.

        Raises:
            ValueError: if the lengths differ.
        """
        _check_lengths("keys", keys, "texts", texts)
        keys_iter = iter(keys)
        for sketches in self._sketch_batches(texts):
            for sketch in sketches:
                key = next(keys_iter)
                if sketch is not None:
                    self._insert(key, sketch)

    def query(self, text: str) -> list[str]:
        """Keys of indexed texts whose estimated Jaccard with ``text`` is >= threshold."""
        return self.query_many([text])[0]

    def query_many(self, texts: Sequence[str]) -> list[list[str]]:
        """``query`` for many texts, without indexing them; batched sketching."""
        return [self._matches(s) for sketches in self._sketch_batches(texts) for s in sketches]

    def add_unique(self, keys: Sequence[str], texts: Sequence[str]) -> dict[str, str]:
        """Visit rows in order; drop near duplicates of indexed rows, index the rest.

        The streaming primitive behind ``find_near_duplicates``: call it batch after
        batch and the result is the same as one call over all rows.

        Returns:
            ``{key: the indexed key it duplicates}`` for dropped rows (most similar
            match, ties to the earliest); rows not in it were kept and indexed.

        Raises:
            ValueError: if the lengths differ.
        """
        _check_lengths("keys", keys, "texts", texts)
        dropped: dict[str, str] = {}
        keys_iter = iter(keys)
        for sketches in self._sketch_batches(texts):
            for sketch in sketches:
                key = next(keys_iter)
                if sketch is None:
                    continue
                matches = self._matches(sketch)
                if matches:
                    dropped[key] = matches[0]
                else:
                    self._insert(key, sketch)
        return dropped


def find_near_duplicates(
    ids: Sequence[str],
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 3,
    seed: int = 1,
    against_ids: Sequence[str] | None = None,
    against_texts: Sequence[str] | None = None,
) -> dict[str, str]:
    """Near duplicates among ``texts`` (first kept) and against another set.

    Pass the seed rows as ``against_*`` to drop new rows that nearly copy a seed;
    leave them out for number-substitution variants, which are near copies of
    their seed by design (module docstring). The ``against_*`` rows are never
    dropped, and not compared with each other.

    Example (polars)::

        dups = find_near_duplicates(new["id"].to_list(), new["prompt"].to_list())
        kept = new.filter(~pl.col("id").is_in(list(dups)))

    Returns:
        ``{id: id it duplicates}``: an earlier kept row of ``ids`` (in the given
        order) or an ``against_ids`` row. Rows not in it are kept.

    Raises:
        ValueError: on length mismatches, repeated ids, or only one of
            ``against_ids``/``against_texts`` given.
    """
    _check_lengths("ids", ids, "texts", texts)
    if (against_ids is None) != (against_texts is None):
        raise ValueError("Pass both against_ids and against_texts, or neither.")
    index = NearDuplicateIndex(threshold=threshold, num_perm=num_perm, ngram=ngram, seed=seed)
    seen = None
    if against_ids is not None:
        _check_lengths("against_ids", against_ids, "against_texts", against_texts)
        seen = _check_unique("against_ids", against_ids)
        index.add_many(against_ids, against_texts)
    _check_unique("ids", ids, seen)
    return index.add_unique(ids, texts)


def text_fingerprint(text: str) -> bytes:
    """128-bit blake2b of the normalized text: stable across processes and runs."""
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=16).digest()


def exact_duplicates(
    ids: Sequence[str],
    texts: Sequence[str],
    against_texts: Iterable[str] = (),
    *,
    against_ids: Sequence[str] | None = None,
) -> dict[str, str]:
    """Rows whose normalized text equals an earlier row's or an ``against_texts`` one.

    Returns:
        ``{id: id it duplicates}``: the first row of ``ids`` with that text, or the
        matching ``against_ids`` entry; without ``against_ids``, ``"against[i]"``
        for position ``i`` of ``against_texts``. Rows not in it are kept.

    Raises:
        ValueError: on length mismatches.
    """
    _check_lengths("ids", ids, "texts", texts)
    first: dict[bytes, str] = {}
    against_texts = list(against_texts)
    if against_ids is not None:
        _check_lengths("against_ids", against_ids, "against_texts", against_texts)
    for i, text in enumerate(against_texts):
        first.setdefault(text_fingerprint(text), against_ids[i] if against_ids is not None else f"against[{i}]")
    dups: dict[str, str] = {}
    for row_id, text in zip(ids, texts):
        kept = first.setdefault(text_fingerprint(text), row_id)
        if kept != row_id:
            dups[row_id] = kept
    return dups
