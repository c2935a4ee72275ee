"""Mixtures: nested subsets below the original size, originals + nested augmented rows above it."""

from __future__ import annotations

import polars as pl
import pytest

from augscale.train.mixture import MixtureError, build_mixture, interleave, write_mixture


@pytest.fixture(scope="module")
def originals(gsm8k_snapshot) -> pl.DataFrame:
    return gsm8k_snapshot.read("train").head(600)


@pytest.fixture(scope="module")
def augmented(originals) -> pl.DataFrame:
    """Rows as an augmented snapshot holds them: source = strategy, parent_id set, ids derived."""
    strategies = ["substitute", "substitute", "rephrase"]
    return originals.with_columns(
        (pl.col("id") + "-aug").alias("id"), pl.col("id").alias("parent_id"),
        pl.Series("source", [strategies[i % 3] for i in range(originals.height)]))


def test_sizes_below_the_original_are_nested_subsets(originals):
    small, large = (build_mixture(originals, size=n, seed=3) for n in (100, 400))
    assert small.rows == 100 and large.rows == 400
    assert small.ids < large.ids
    assert small.n_augmented == large.n_augmented == 0
    # another seed draws another subset; the same seed the same one
    assert build_mixture(originals, size=100, seed=4).ids != small.ids
    assert build_mixture(originals.reverse(), size=100, seed=3).ids == small.ids


def test_sizes_above_the_original_keep_all_originals_and_nest_augmented_rows(originals, augmented):
    shares = {"substitute": 0.5, "rephrase": 0.5}
    arms = [build_mixture(originals, [augmented], size=n, shares=shares, seed=0) for n in (600, 700, 900)]
    original_ids = set(originals["id"].to_list())
    for arm in arms:
        assert original_ids <= arm.ids
    assert arms[0].ids < arms[1].ids < arms[2].ids
    by = arms[2].by_source()
    assert by == {"original": 600, "rephrase": 150, "substitute": 150}
    assert arms[1].n_augmented == 100 and arms[1].n_original == 600


def test_shares_hold_in_every_prefix_within_one_row():
    seq = interleave({"a": 1000, "b": 1000, "c": 1000}, {"a": 0.6, "b": 0.3, "c": 0.1}, 500)
    for k in range(1, 501):
        prefix = seq[:k]
        assert abs(prefix.count("a") - 0.6 * k) < 1 and abs(prefix.count("c") - 0.1 * k) < 1


def test_default_shares_follow_availability_and_none_size_takes_everything(originals, augmented):
    everything = build_mixture(originals, [augmented], seed=0)
    assert everything.rows == 1200 and everything.n_augmented == 600
    part = build_mixture(originals, [augmented], size=1000, seed=0)
    assert part.n_augmented == 400 and part.ids < everything.ids


def test_bad_mixtures_say_what_to_change(originals, augmented):
    with pytest.raises(MixtureError, match="Did you mean 'substitute'"):
        build_mixture(originals, [augmented], size=700, shares={"substitue": 1.0})
    with pytest.raises(MixtureError, match="not enough augmented rows of strategy 'rephrase'"):
        build_mixture(originals, [augmented], size=1100, shares={"rephrase": 0.5, "substitute": 0.5})
    with pytest.raises(MixtureError, match="augmented inputs have 200 usable rows"):
        build_mixture(originals, [augmented], size=1000, shares={"rephrase": 1.0})
    with pytest.raises(MixtureError, match="augmented inputs have 0 usable rows"):
        build_mixture(originals, size=700)
    with pytest.raises(MixtureError, match="duplicate row id"):
        build_mixture(originals, [originals.with_columns(pl.lit("substitute").alias("source"))], size=700)
    with pytest.raises(MixtureError, match="missing column"):
        build_mixture(originals.drop("difficulty"))


def test_write_mixture_streams_rows_in_curriculum_order(originals, augmented, tmp_path, gsm8k_snapshot):
    mix = build_mixture(gsm8k_snapshot.path, [augmented], size=7200, seed=1)  # a snapshot folder as input
    path = write_mixture(mix, tmp_path / "train.parquet", curriculum="easy_to_hard", seed=1)
    frame = pl.read_parquet(path)
    assert frame.height == 7200 and frame["order"].to_list() == list(range(7200))
    assert frame["difficulty"].is_sorted()
    assert set(frame.columns) >= {"id", "prompt", "target", "source", "parent_id", "difficulty"}
    assert set(frame["id"].to_list()) == mix.ids
