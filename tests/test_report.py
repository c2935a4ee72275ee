"""The scaling report: CIs over seeds, paired McNemar against the baseline, plot and report.md."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from augscale.evaluate.report import gain_per_doubling, load_results, results_table, write_report
from augscale.evaluate.stats import mcnemar_exact


def test_mcnemar_exact_matches_binomial():
    a = [True] * 10 + [False] * 10
    b = [True] * 10 + [True] * 8 + [False] * 2
    res = mcnemar_exact(a, b)
    assert res["b_only"] == 8 and res["a_only"] == 0
    assert res["p_value"] == pytest.approx(2 * 0.5 ** 8)  # two-sided exact binomial, 8 discordant pairs
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def _arm(run, name, n_train, n_aug, strategy, seed, acc_items, baseline=False):
    d = run / "arms" / name
    d.mkdir(parents=True)
    items = pl.DataFrame({"id": [f"t{i}" for i in range(len(acc_items))], "correct": acc_items})
    items.write_parquet(d / "items.parquet")
    acc = sum(acc_items) / len(acc_items)
    (d / "result.json").write_text(json.dumps({
        "arm": name, "n_train": n_train, "n_original": n_train - n_aug, "n_augmented": n_aug,
        "strategy": strategy, "curriculum": "random", "seed": seed, "baseline": baseline,
        "metrics": {"accuracy": acc, "reference_loss": 2.0 - acc, "n": len(acc_items)},
        "train_tokens": 1000 * n_train, "train_seconds": 1.0, "generation_tokens": 0, "cost_usd": 0.0}))


def test_report_files_and_columns(tmp_path):
    rng = random.Random(0)
    for seed in (0, 1):
        base = [rng.random() < 0.3 for _ in range(100)]
        _arm(tmp_path, f"n100-original-random-s{seed}", 100, 0, "original", seed, base, baseline=True)
        better = [x or rng.random() < 0.4 for x in base]
        _arm(tmp_path, f"n200-substitute-random-s{seed}", 200, 100, "substitute", seed, better)
    results, items = load_results(tmp_path)
    table = results_table(results, items, ["accuracy", "reference_loss"], "accuracy")
    assert table.height == 2
    for col in ("accuracy_ci_low", "accuracy_ci_high", "accuracy_sd", "accuracy_diff", "mcnemar_p"):
        assert col in table.columns
    aug = table.filter(pl.col("strategy") == "substitute").row(0, named=True)
    assert aug["accuracy_diff"] > 0 and aug["mcnemar_p"] < 0.01 and aug["seeds"] == "0,1"
    assert aug["accuracy_ci_low"] < aug["accuracy"] < aug["accuracy_ci_high"]
    gains = gain_per_doubling(table, "accuracy")
    assert gains["substitute/random"] == pytest.approx(aug["accuracy_diff"])  # two points, one doubling
    report = write_report(tmp_path, results, items, metrics=["accuracy", "reference_loss"], headline="accuracy",
                          original_size=100, context={"task": "gsm8k"})
    text = report.read_text()
    assert "McNemar" in text and "per doubling" in text and "scaling.png" in text
    assert (tmp_path / "scaling.png").stat().st_size > 5000
    csv = pl.read_csv(tmp_path / "results.csv")
    assert "mcnemar_p" in csv.columns and csv.height == 2
