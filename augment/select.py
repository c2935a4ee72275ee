"""Selection of ``target_size`` rows among the survivors: strategies in their shares, deterministic.

Quotas: ``target_size`` split over the strategies by their shares (largest remainder). A
strategy with fewer survivors than its quota gives the rest to the others, in proportion to
their shares, as far as they have rows; what no strategy can fill is the shortfall.

Within a strategy, rows are ranked so that the parents are covered evenly: first one variant
of every parent, then a second, and so on; ties are broken by a hash of the seed and the id.
The same survivors and seed give the same rows, whatever order they were generated in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import polars as pl


@dataclass
class Selection:
    """The chosen ids, the survivors left over (``over_target``), quotas and the shortfall."""

    selected: list[str]
    over_target: list[str]
    quotas: dict[str, int] = field(default_factory=dict)
    taken: dict[str, int] = field(default_factory=dict)
    shortfall: int = 0


def split_quotas(total: int, shares: dict[str, float]) -> dict[str, int]:
    """``total`` split in proportion to ``shares`` (largest remainder; ties by name order)."""
    weight = sum(shares.values())
    exact = {k: total * v / weight for k, v in shares.items()}
    quotas = {k: int(x) for k, x in exact.items()}
    rest = total - sum(quotas.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), list(shares).index(k)))[:rest]:
        quotas[k] += 1
    return quotas


def allocate(target: int, shares: dict[str, float], available: dict[str, int]) -> dict[str, int]:
    """How many rows each strategy gives: its quota, the others' unfilled quota redistributed."""
    taken = {k: 0 for k in shares}
    need = target
    open_ = {k: v for k, v in shares.items() if available.get(k, 0) > 0}
    while need > 0 and open_:
        quotas = split_quotas(need, open_)
        for k, q in quotas.items():
            give = min(q, available.get(k, 0) - taken[k])
            taken[k] += give
            need -= give
        open_ = {k: v for k, v in open_.items() if available.get(k, 0) > taken[k]}
    return taken


def _hash(seed: int, row_id: str) -> str:
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def select_rows(survivors: pl.DataFrame, *, shares: dict[str, float], target_size: int, seed: int) -> Selection:
    """Pick ``target_size`` rows of ``survivors`` (columns ``id``, ``source``, ``parent_id``).

    Returns:
        The selection; ``selected`` is sorted by id.
    """
    if survivors.height == 0:
        return Selection([], [], split_quotas(target_size, shares), {k: 0 for k in shares}, target_size)
    ranked = (
        survivors.select("id", "source", "parent_id")
        .with_columns(pl.col("id").map_elements(lambda i: _hash(seed, i), return_dtype=pl.String).alias("_h"))
        .with_columns(pl.col("_h").rank("ordinal").over("source", "parent_id").alias("_round"))
        .sort("source", "_round", "_h")
    )
    available = dict(ranked.group_by("source").len().iter_rows())
    taken = allocate(target_size, shares, available)
    # Position of each row in its strategy's ranking; the first taken[strategy] are chosen.
    picked = ranked.with_columns(
        (pl.int_range(pl.len()).over("source")
         < pl.col("source").replace_strict(taken, default=0, return_dtype=pl.Int64)).alias("_chosen")
    )
    selected = sorted(picked.filter(pl.col("_chosen"))["id"].to_list())
    over = sorted(picked.filter(~pl.col("_chosen"))["id"].to_list())
    return Selection(selected, over, split_quotas(target_size, shares), taken,
                     max(0, target_size - sum(taken.values())))
