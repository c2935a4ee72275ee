"""Training mixtures: which rows an arm trains on, nested across sizes.

- ``size`` at or below the original row count N0: the first ``size`` originals in a seeded
  hash order. A smaller arm's rows are inside a larger one's (same seed).
- ``size`` above N0: every original plus ``size - N0`` augmented rows taken from one fixed,
  seeded sequence that interleaves the strategies by their ``shares`` (each prefix holds every
  strategy within one row of its share). Prefixes of one sequence are nested, so a larger
  arm again contains a smaller one.
- ``size`` None: every original and every augmented row (of strategies with a positive share).

Only the small index (``id``, ``source``, ``difficulty``) is collected in memory; the rows
themselves go from the input Parquet files to the mixture file through a lazy join
(:func:`write_mixture`), in curriculum order.

Example (what issue 7's ablation grid calls per arm)::

    mix = build_mixture(snapshot_dir, [augmented_dir], size=2 * n0, shares={"substitute": 1.0}, seed=0)
    path = write_mixture(mix, run_dir / "data" / "train.parquet", curriculum="random", seed=0)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import polars as pl

from augscale.errors import AugscaleError
from augscale.train.curriculum import order_rows, stable_key

Source = Union[str, Path, pl.DataFrame, pl.LazyFrame]
INDEX_COLUMNS = ("id", "source", "difficulty")
# What batching reads (see Task.train_text): the rest of the canonical record rides along.
REQUIRED_COLUMNS = ("id", "source", "difficulty", "prompt", "target")


class MixtureError(AugscaleError, ValueError):
    """A mixture that cannot be built from the given rows; the message says what to change."""


@dataclass
class Mixture:
    """The rows of one training arm: a small index plus the inputs they come from."""

    index: pl.DataFrame  # (id, source, difficulty): the selected rows, originals first
    inputs: list[pl.LazyFrame] = field(repr=False)
    n_original: int
    n_augmented: int

    @property
    def rows(self) -> int:
        return self.index.height

    @property
    def ids(self) -> set[str]:
        return set(self.index["id"].to_list())

    def by_source(self) -> dict[str, int]:
        counts = self.index.group_by("source").len().sort("source")
        return dict(zip(counts["source"].to_list(), counts["len"].to_list()))

    def summary(self) -> dict:
        return {"rows": self.rows, "n_original": self.n_original, "n_augmented": self.n_augmented,
                "by_source": self.by_source()}

    def frame(self) -> pl.DataFrame:
        """The selected rows with all their columns (unordered; small mixtures and tests)."""
        order = self.index.select("id", pl.int_range(pl.len(), dtype=pl.UInt32).alias("order"))
        return _join_rows(self.inputs, order).sort("order").collect()


def read_rows(source: Source) -> pl.LazyFrame:
    """A lazy frame over training rows: a snapshot folder (its ``train.parquet``, else every
    ``*.parquet`` but ``valid``/``test``), a Parquet file, or a frame.

    Raises:
        MixtureError: a missing path, a folder without Parquet files, or missing columns.
    """
    if isinstance(source, pl.DataFrame):
        lf, name = source.lazy(), "<frame>"
    elif isinstance(source, pl.LazyFrame):
        lf, name = source, "<lazy frame>"
    else:
        path = Path(source)
        if path.is_dir():
            files = [path / "train.parquet"] if (path / "train.parquet").is_file() else sorted(
                p for p in path.glob("*.parquet") if p.stem not in ("valid", "test"))
            if not files:
                raise MixtureError(f"{path}: no train.parquet (or other .parquet file) in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise MixtureError(f"{path}: no such snapshot folder or Parquet file")
        lf, name = pl.scan_parquet(files), str(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in lf.collect_schema().names()]
    if missing:
        raise MixtureError(f"{name}: missing column(s) {missing}; training rows need {list(REQUIRED_COLUMNS)}")
    return lf


def interleave(counts: dict[str, int], shares: dict[str, float], total: int) -> list[str]:
    """A sequence of ``total`` strategy names whose every prefix follows ``shares`` within one row.

    At each position the strategy furthest below its share goes next (ties by name); the
    sequence does not depend on ``total``, so shorter sequences are prefixes of longer ones.

    Raises:
        MixtureError: a strategy runs out of rows before ``total`` is reached.
    """
    weight = sum(shares.values())
    taken = {s: 0 for s in shares}
    out: list[str] = []
    for k in range(1, total + 1):
        pick = max(sorted(shares), key=lambda s: shares[s] / weight * k - taken[s])
        if taken[pick] >= counts.get(pick, 0):
            need = {s: round(shares[s] / weight * total) for s in shares}
            raise MixtureError(
                f"not enough augmented rows of strategy {pick!r} for {total} augmented rows at these shares: "
                f"needs about {need[pick]}, has {counts.get(pick, 0)} (available: {counts}). "
                "Lower data.size, change data.shares, or augment more rows.")
        taken[pick] += 1
        out.append(pick)
    return out


def build_mixture(original: Source, augmented: Sequence[Source] = (), *, size: int | None = None,
                  shares: dict[str, float] | None = None, seed: int = 0) -> Mixture:
    """Select an arm's training rows (nested across sizes for the same seed and shares).

    Args:
        original: the original training rows (snapshot folder, Parquet file or frame).
        augmented: augmented rows (``source`` = the strategy that made them).
        size: rows wanted; None takes every original and augmented row.
        shares: strategy -> share of the augmented rows; None: as available (one seeded order).
        seed: the order in which rows enter as the size grows.

    Raises:
        MixtureError: duplicate ids, an unknown strategy in ``shares``, too few rows for ``size``.
    """
    inputs = [read_rows(original)] + [read_rows(a) for a in augmented]
    index = [lf.select(*INDEX_COLUMNS).collect() for lf in inputs]
    orig = _ranked(index[0], seed)
    aug = _ranked(pl.concat(index[1:], how="vertical_relaxed"), seed) if len(index) > 1 else orig.clear()
    aug = aug.filter(pl.col("source") != "original")
    both = pl.concat([orig.select("id"), aug.select("id")])
    if both["id"].n_unique() != both.height:
        dup = both.filter(pl.col("id").is_duplicated())["id"][0]
        raise MixtureError(f"duplicate row id {dup!r} across the original and augmented inputs")

    counts = dict(aug.group_by("source").len().iter_rows())
    if shares is not None:
        unknown = [s for s in shares if s not in counts]
        if unknown:
            near = difflib.get_close_matches(unknown[0], list(counts), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise MixtureError(f"shares names strategy {unknown[0]!r}, which has no augmented rows.{hint} "
                               f"Strategies in the augmented data: {sorted(counts) or 'none'}")
        shares = {s: float(v) for s, v in shares.items() if v > 0}
        aug = aug.filter(pl.col("source").is_in(list(shares)))

    n0 = orig.height
    if size is None:
        n_orig, n_aug = n0, aug.height
    elif size <= n0:
        n_orig, n_aug = size, 0
    else:
        n_orig, n_aug = n0, size - n0
        if n_aug > aug.height:
            raise MixtureError(f"size {size} needs {n_aug} augmented rows beyond the {n0} originals; "
                               f"the augmented inputs have {aug.height} usable rows. Lower data.size or augment more.")

    picked_aug = aug.head(0)
    if n_aug:
        if shares is None:
            picked_aug = aug.head(n_aug)  # one seeded order over every strategy
        else:
            sequence = interleave({s: c for s, c in counts.items() if s in shares}, shares, n_aug)
            want = {s: sequence.count(s) for s in shares}
            picked_aug = pl.concat([aug.filter(pl.col("source") == s).head(n) for s, n in want.items()])
    selected = pl.concat([orig.head(n_orig), picked_aug]).drop("_rank")
    return Mixture(index=selected, inputs=inputs, n_original=n_orig, n_augmented=picked_aug.height)


def _ranked(index: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Rows in their seeded entry order (the rank depends only on the id and the seed)."""
    rank = pl.Series("_rank", stable_key(index["id"].to_list(), seed, salt="mixture"), dtype=pl.UInt64)
    return index.with_columns(rank).sort("_rank", "id")


def _join_rows(inputs: list[pl.LazyFrame], order: pl.DataFrame) -> pl.LazyFrame:
    parts = [lf.join(order.lazy(), on="id", how="inner") for lf in inputs]
    return pl.concat(parts, how="diagonal_relaxed")


def write_mixture(mixture: Mixture, path: Path | str, *, curriculum: str = "random", seed: int = 0,
                  row_group_size: int = 2048) -> Path:
    """Write the mixture's rows to one Parquet file in curriculum order, with an ``order`` column.

    The rows stream from the input files through a lazy join; only the index is in memory.
    Row groups of ``row_group_size`` let Ray Data read the file as several blocks.

    Raises:
        UnknownNameError: an unknown curriculum name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = order_rows(mixture.index.select(*INDEX_COLUMNS), curriculum, seed)
    order = ordered.select("id", pl.int_range(pl.len(), dtype=pl.UInt32).alias("order"))
    tmp = path.with_name(f".{path.name}.tmp")
    _join_rows(mixture.inputs, order).sort("order").sink_parquet(tmp, row_group_size=row_group_size)
    tmp.replace(path)
    return path
