"""Curriculum orders: the order in which one epoch visits the training rows.

Every order is a deterministic function of the rows' ``id``, ``source`` and ``difficulty``
and the seed; ties break by a seeded hash of the id, so the same rows and seed give the
same order whatever order the rows came in.

| name | order |
| --- | --- |
| ``random`` | a seeded shuffle |
| ``easy_to_hard`` | ascending ``difficulty`` (the task's score, e.g. gsm8k calculator steps) |
| ``hard_to_easy`` | descending ``difficulty`` |
| ``original_first`` | original rows (shuffled), then augmented rows (shuffled) |
| ``original_last`` | augmented rows (shuffled), then original rows (shuffled) |

The order holds at the scale of the batching windows (:mod:`augscale.train.batching`):
rows are length-grouped inside consecutive windows of this order, never across them.
The same order is used every epoch.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import polars as pl

from augscale.tasks import UnknownNameError, unknown_name_message

# A curriculum maps a frame with columns id, source, difficulty and a seeded tie-break
# key ``_key`` to the sort keys [(column expression, descending)].
SortKeys = list[tuple[pl.Expr, bool]]
_CURRICULA: dict[str, Callable[[], SortKeys]] = {}


def register_curriculum(name: str, sort_keys: Callable[[], SortKeys]) -> None:
    """Add a curriculum under a short name.

    Raises:
        ValueError: the name is already registered.
    """
    if name in _CURRICULA:
        raise ValueError(f"curriculum {name!r} is already registered")
    _CURRICULA[name] = sort_keys


def curriculum_names() -> list[str]:
    return sorted(_CURRICULA)


def check_curriculum(name: str) -> str:
    """The name, if registered.

    Raises:
        UnknownNameError: not registered; the message suggests the nearest and lists the valid names.
    """
    if name not in _CURRICULA:
        raise UnknownNameError(unknown_name_message("curriculum", name, curriculum_names()))
    return name


def stable_key(ids: list[str], seed: int, salt: str = "order") -> list[int]:
    """A seeded 63-bit hash per id: a rank that does not depend on the other rows or their order."""
    prefix = f"{seed}:{salt}:".encode()
    return [int.from_bytes(hashlib.blake2b(prefix + i.encode(), digest_size=8).digest(), "big") >> 1 for i in ids]


def order_rows(frame: pl.DataFrame, curriculum: str, seed: int) -> pl.DataFrame:
    """``frame`` sorted in the curriculum's order (columns used: ``id``, ``source``, ``difficulty``).

    Raises:
        UnknownNameError: an unknown curriculum name.
    """
    keys = _CURRICULA[check_curriculum(curriculum)]()
    keyed = frame.with_columns(pl.Series("_key", stable_key(frame["id"].to_list(), seed), dtype=pl.UInt64))
    exprs = [e for e, _ in keys] + [pl.col("_key")]
    descending = [d for _, d in keys] + [False]
    return keyed.sort(exprs, descending=descending).drop("_key")


def _is_augmented() -> pl.Expr:
    return pl.col("source") != "original"


register_curriculum("random", lambda: [])
register_curriculum("easy_to_hard", lambda: [(pl.col("difficulty"), False)])
register_curriculum("hard_to_easy", lambda: [(pl.col("difficulty"), True)])
register_curriculum("original_first", lambda: [(_is_augmented(), False)])
register_curriculum("original_last", lambda: [(_is_augmented(), True)])
