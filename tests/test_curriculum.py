"""Curriculum orders give their documented order, and batching keeps it at the scale of windows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from augscale.tasks import UnknownNameError
from augscale.train.curriculum import curriculum_names, order_rows, register_curriculum


@pytest.fixture(scope="module")
def rows(gsm8k_snapshot) -> pl.DataFrame:
    train = gsm8k_snapshot.read("train").head(400)
    # mark every fourth row as augmented, as an augmented snapshot's rows would be
    return train.with_columns(pl.when(pl.int_range(pl.len()) % 4 == 0).then(pl.lit("substitute"))
                              .otherwise(pl.lit("original")).alias("source"))


def test_the_five_orders_are_registered():
    assert curriculum_names() == ["easy_to_hard", "hard_to_easy", "original_first", "original_last", "random"]


@pytest.mark.parametrize("name", ["random", "easy_to_hard", "hard_to_easy", "original_first", "original_last"])
def test_each_order_is_a_deterministic_permutation(rows, name):
    ordered = order_rows(rows, name, seed=7)
    assert sorted(ordered["id"].to_list()) == sorted(rows["id"].to_list())
    # the same seed gives the same order whatever order the rows came in
    assert order_rows(rows.reverse(), name, seed=7)["id"].to_list() == ordered["id"].to_list()
    # ties (and the random order) break by the seed
    assert order_rows(rows, name, seed=8)["id"].to_list() != ordered["id"].to_list()


def test_orders_follow_their_documented_keys(rows):
    assert order_rows(rows, "easy_to_hard", 0)["difficulty"].is_sorted()
    assert order_rows(rows, "hard_to_easy", 0)["difficulty"].is_sorted(descending=True)
    first = order_rows(rows, "original_first", 0)["source"].to_list()
    assert first == ["original"] * 300 + ["substitute"] * 100
    last = order_rows(rows, "original_last", 0)["source"].to_list()
    assert last == ["substitute"] * 100 + ["original"] * 300
    shuffled = order_rows(rows, "random", 0)["difficulty"].to_numpy()
    assert abs(spearmanr(shuffled, np.arange(len(shuffled)))[0]) < 0.2


def test_unknown_and_duplicate_names_are_refused():
    with pytest.raises(UnknownNameError, match="Did you mean 'easy_to_hard'.*Valid: easy_to_hard, hard_to_easy"):
        order_rows(pl.DataFrame({"id": ["a"], "source": ["original"], "difficulty": [1.0]}), "easy_to_hrad", 0)
    with pytest.raises(ValueError, match="already registered"):
        register_curriculum("random", lambda: [])


def test_easy_to_hard_rises_across_an_epoch_through_the_ray_data_stream(ray_session, gsm8k_snapshot, tiny_model,
                                                                       tmp_path):
    """The real path: mixture file -> Ray Data tokenization (order preserved) -> windows -> micro-batches."""
    import ray.data

    from augscale.train.batching import micro_batches, token_dataset
    from augscale.tasks import get_task
    from augscale.train.mixture import build_mixture, write_mixture
    from augscale.train.model import load_tokenizer

    mix = build_mixture(gsm8k_snapshot.path, size=1024, seed=0)
    path = write_mixture(mix, tmp_path / "train.parquet", curriculum="easy_to_hard", seed=0, row_group_size=200)
    tokenizer_json = load_tokenizer(tiny_model, get_task("gsm8k").tokens.all()).backend_tokenizer.to_str()
    ds = token_dataset(str(path), tokenizer_json=tokenizer_json, task_name="gsm8k")
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    window, micro = 256, 16
    windows = list(ds.iter_batches(batch_size=window, batch_format="numpy"))
    assert np.concatenate([w["order"] for w in windows]).tolist() == list(range(1024))  # the stream kept the order
    for before, after in zip(windows, windows[1:]):
        assert before["difficulty"].max() <= after["difficulty"].min()  # windows never mix across the order
    batches = list(micro_batches(windows, micro_batch_size=micro, pad_id=0))
    assert len(batches) == 1024 // micro
    mean_difficulty = [b["difficulty"].mean() for b in batches]
    rho = spearmanr(mean_difficulty, np.arange(len(batches)))[0]
    assert rho > 0.9, f"micro-batch difficulty should rise across the epoch (spearman {rho:.2f})"
