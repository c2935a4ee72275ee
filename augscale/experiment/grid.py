"""The arms of a scaling-by-data grid.

An arm is one training run: ``n_train`` rows, made of originals only (``strategy`` =
``original``, sizes up to the original size, nested subsets) or of every original plus
augmented rows of one strategy (sizes above it, nested too), in one curriculum order, with one
seed. The original-size, original-only arm of each seed and curriculum is the baseline that
the paired tests compare against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    n_train: int
    strategy: str
    curriculum: str
    seed: int
    baseline: bool

    def as_dict(self) -> dict:
        return asdict(self)


def arm_sizes(sizes: list[float], original_size: int, multiples: bool) -> list[int]:
    """Row counts of the grid's sizes (multiples of ``original_size``, or absolute), original size included."""
    counts = {int(round(s * original_size)) if multiples else int(s) for s in sizes}
    counts.add(original_size)
    return sorted(c for c in counts if c > 0)


def enumerate_arms(*, sizes: list[int], original_size: int, strategies: list[str], curricula: list[str],
                   seeds: list[int]) -> list[Arm]:
    """Every arm of the grid, seeds outermost (so a killed run has whole seeds done first).

    Sizes up to ``original_size`` train on originals only; sizes above it get one arm per
    augmentation strategy (``original`` cannot grow past the original size and is skipped there).
    """
    aug = [s for s in strategies if s != "original"]
    arms = []
    for seed in seeds:
        for curriculum in curricula:
            for n in sizes:
                if n <= original_size:
                    arms.append(Arm(f"n{n}-original-{curriculum}-s{seed}", n, "original", curriculum, seed,
                                    baseline=n == original_size))
                else:
                    arms.extend(Arm(f"n{n}-{s}-{curriculum}-s{seed}", n, s, curriculum, seed, False) for s in aug)
    return arms
