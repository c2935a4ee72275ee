"""augscale ablate: a tiny grid (2 sizes x 2 seeds) is killed, resumes without retraining finished
arms, keeps nested subsets, gives every arm the same optimizer steps under the `steps` budget,
and reports CIs and paired tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from augscale.experiment.grid import arm_sizes, enumerate_arms

TINY = """# augscale ablate tiny.yaml
kind: ablate
task: {{name: gsm8k}}
data: {{data_dir: {data_dir}, cache_dir: {cache_dir}}}
original_size: 64
train:
  kind: train
  task: {{name: gsm8k}}
  model:
    init: {{task: {{name: gsm8k}}, vocab_size: 600, hidden_size: 32, num_layers: 1, num_heads: 2,
           tokenizer_max_texts: 64}}
  data: {{valid_limit: 16}}
  batching: {{micro_batch_size: 8, window: 32, max_seq_len: 256}}
  optimizer: {{lr: 3.0e-3}}
  schedule: {{warmup_steps: 1}}
  deepspeed: {{zero_stage: 2}}
  scaling: {{num_workers: 2, cpus_per_worker: 1}}
  progress: false
eval: {{split: test, limit: 12, max_new_tokens: 8, batch_size: 12}}
arms: {{sizes: [0.5, 1], strategies: [original], curricula: [random], seeds: [0, 1]}}
budget: {{mode: steps, steps: 3}}
out_dir: {out_dir}
"""


def test_grid_enumeration_and_sizes():
    sizes = arm_sizes([0.5, 1, 2, 4], 1000, True)
    assert sizes == [500, 1000, 2000, 4000]
    arms = enumerate_arms(sizes=sizes, original_size=1000, strategies=["original", "substitute", "rephrase"],
                          curricula=["random"], seeds=[0, 1])
    names = [a.name for a in arms]
    assert "n500-original-random-s0" in names and "n4000-rephrase-random-s1" in names
    assert "n2000-original-random-s0" not in names  # originals cannot grow past the original size
    assert [a.name for a in arms if a.baseline] == ["n1000-original-random-s0", "n1000-original-random-s1"]
    assert len(arms) == 2 * (2 + 2 * 2)


def test_arm_generation_cost_is_its_share_of_the_strategy_spend(tmp_path):
    from augscale.experiment.runner import arm_generation, generation_usage

    paths = []
    for name, usage, counts in [
        ("llm", {"rephrase": {"tokens": 9000, "cost_usd": 0.09, "requests": 30}},
         {"rephrase": {"accepted": 300, "candidates": 400}}),
        ("offline", {"substitute": {}}, {"substitute": {"accepted": 500}}),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"usage": usage, "counts": counts}))
        paths.append(d / "train.parquet")
    paths.append(tmp_path / "no-manifest" / "train.parquet")  # a plain file: its cost is unknown
    usage = generation_usage(paths)
    assert usage["rephrase"] == {"tokens": 9000, "cost_usd": 0.09, "accepted": 300}
    # 100 of the 300 accepted rows: a third of the spend, the rejected attempts' tokens included
    assert arm_generation(usage, "rephrase", 100) == (3000, 0.03)
    assert arm_generation(usage, "substitute", 100) == (0, 0.0)  # no LLM, no tokens
    assert arm_generation(usage, "original", 0) == (0, 0.0)


def test_finished_arm_with_other_settings_is_refused(tmp_path):
    from augscale.config import ExperimentEvalConfig, TrainConfig, validate_config
    from augscale.errors import AugscaleError
    from augscale.experiment.runner import arm_settings, check_reusable

    train = validate_config(TrainConfig, {"kind": "train", "task": {"name": "gsm8k"}, "model": {"path": "m"}})
    ev = ExperimentEvalConfig()
    settings = arm_settings(train, ev, [], {"path": "m"})
    assert settings == arm_settings(train, ev, [], {"path": "m"})  # stable
    arm = tmp_path / "arm"
    assert not check_reusable(arm, settings)  # not finished: train it
    arm.mkdir()
    (arm / "result.json").write_text(json.dumps({"settings": settings}))
    assert check_reusable(arm, settings)
    other = arm_settings(train.model_copy(update={"seed": 7}), ev, [], {"path": "m"})
    assert other != settings
    with pytest.raises(AugscaleError, match="trained with other settings"):
        check_reusable(arm, other)
    assert arm_settings(train, ev, [tmp_path / "aug.parquet"], {"path": "m"}) != settings


def test_report_on_a_folder_that_is_no_run_says_so(tmp_path):
    def report(folder):
        return subprocess.run([sys.executable, "-m", "augscale.cli", "report", str(folder)], capture_output=True,
                              text=True, timeout=120)

    res = report(tmp_path / "missing")
    assert res.returncode == 2 and "not an ablation run folder (no config.yaml" in res.stderr
    assert "Traceback" not in res.stderr
    (tmp_path / "config.yaml").write_text("kind: ablate\narms: {sizes: [1]\n")  # broken YAML
    res = report(tmp_path)
    assert res.returncode == 2 and f"{tmp_path / 'config.yaml'}:" in res.stderr and "not valid YAML" in res.stderr


def _run(cfg: Path, env: dict, log: Path) -> subprocess.Popen:
    # Output to a file, not a pipe: Ray's progress logs would fill a pipe nobody reads and block the run.
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "augscale.cli", "ablate", str(cfg)], stdout=fh,
                                stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


@pytest.mark.slow
def test_tiny_grid_killed_then_resumed(tmp_path, data_dir, cache_dir):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(data_dir=data_dir, cache_dir=cache_dir, out_dir=out))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray instance
    env["DS_ACCELERATOR"] = "cpu"

    proc = _run(cfg, env, tmp_path / "first.log")
    first = out / "arms" / "n32-original-random-s0" / "result.json"
    deadline = time.monotonic() + 600
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    assert first.is_file(), (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the driver and its Ray processes mid-grid
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("arms/*/result.json")}
    assert 1 <= len(done_before) < 4

    proc = _run(cfg, env, tmp_path / "second.log")
    proc.wait(timeout=900)
    output = (tmp_path / "second.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert output.strip().splitlines()[-1].endswith("report.md")
    for name in done_before:
        assert f"{name}: finished earlier, reused" in output
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("arms/*/result.json")}
    assert len(after) == 4
    assert all(after[n] == t for n, t in done_before.items())  # finished arms were not retrained

    results = {n: json.loads((out / "arms" / n / "result.json").read_text()) for n in after}
    assert all(r["settings"] for r in results.values())
    assert {r["optimizer_steps"] for r in results.values()} == {3}  # the `steps` budget
    for seed in (0, 1):  # nested subsets: the smaller arm's rows are inside the larger one's
        small = set(pl.read_parquet(out / "arms" / f"n32-original-random-s{seed}" / "train" / "data" / "train.parquet")["id"])
        large = set(pl.read_parquet(out / "arms" / f"n64-original-random-s{seed}" / "train" / "data" / "train.parquet")["id"])
        assert len(small) == 32 and len(large) == 64 and small < large

    table = pl.read_csv(out / "results.csv")
    for col in ("accuracy_ci_low", "accuracy_ci_high", "accuracy_sd", "accuracy_diff", "mcnemar_p", "seeds"):
        assert col in table.columns
    assert table.height == 2 and set(table["seeds"].cast(pl.String)) == {"0,1"}
    report = (out / "report.md").read_text()
    assert "McNemar" in report and (out / "scaling.png").is_file()
    assert "0 LLM generation tokens for augmentation ($0.00)" in report  # original arms only

    # `augscale report` rebuilds the report from the finished arms alone
    (out / "report.md").unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "augscale.cli", "report", str(out)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert rebuilt.stdout.strip().splitlines()[-1] == str(out / "report.md")
    text = (out / "report.md").read_text()
    assert "rebuilt by `augscale report` from 4 finished arm(s)" in text and "McNemar" in text
