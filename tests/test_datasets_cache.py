"""datasets_cache: snapshot counts, splits, idempotence, atomic writes and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from augscale.datasets_cache import list_snapshots, prepare
from augscale.tasks import RawDataError, get_task
from augscale.tasks.sql import schema_key


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "augscale.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_prepare_gsm8k_cli_counts_and_idempotent_rerun(data_dir, cache_dir):
    res = run_cli("data", "prepare", "gsm8k", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["task"] == "gsm8k"
    assert summary["rows"]["train"] + summary["rows"]["valid"] == 7473
    assert summary["rows"]["test"] == 1319
    assert 0.04 < summary["rows"]["valid"] / 7473 < 0.06
    folder = Path(summary["path"])
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["source"]["sha256"]) == {"train.jsonl", "test.jsonl"}
    assert manifest["rows"] == summary["rows"]

    again = run_cli("data", "prepare", "gsm8k", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--json")
    assert again.returncode == 0, again.stderr
    summary2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary2["version"] == summary["version"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes  # files untouched
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_prepare_viggo_official_splits(data_dir, cache_dir):
    snap, _ = prepare(get_task("viggo"), data_dir=data_dir, cache_dir=cache_dir)
    assert snap.manifest["rows"] == {"train": 5103, "valid": 714, "test": 1083}
    rec = snap.read("train").row(0, named=True)
    assert rec["target"].startswith("inform(") and not rec["prompt"].startswith("inform(")  # sentence -> MR


def test_prepare_sql_grouped_by_schema(data_dir, cache_dir):
    snap, _ = prepare(get_task("sql"), data_dir=data_dir, cache_dir=cache_dir)
    rows = snap.manifest["rows"]
    assert sum(rows.values()) == 4000
    assert 0.85 < rows["train"] / 4000 < 0.95 and rows["valid"] > 100 and rows["test"] > 100
    schemas = {s: set(snap.read(s)["context"].map_elements(schema_key, return_dtype=pl.String)) for s in rows}
    assert not schemas["train"] & schemas["test"]
    assert not schemas["train"] & schemas["valid"]
    assert not schemas["valid"] & schemas["test"]


def test_records_have_canonical_schema_and_unique_ids(gsm8k_snapshot):
    from augscale.tasks import RECORD_COLUMNS

    frames = [gsm8k_snapshot.read(s) for s in ("train", "valid", "test")]
    for df in frames:
        assert tuple(df.columns) == RECORD_COLUMNS
    ids = pl.concat([df["id"] for df in frames])
    assert ids.n_unique() == ids.len()
    train = frames[0]
    assert (train["source"] == "original").all() and train["parent_id"].is_null().all()
    assert train["difficulty"].min() >= 0 and train["difficulty"].max() > 3


def test_list_snapshots(gsm8k_snapshot, cache_dir):
    found = {(s.task, s.version) for s in list_snapshots(cache_dir)}
    assert ("gsm8k", gsm8k_snapshot.version) in found


def test_offline_without_data_dir_names_both_ways(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "AUGSCALE_DATA_DIR": ""}
    res = run_cli("data", "prepare", "gsm8k", "--cache-dir", str(tmp_path / "c"), env=env)
    assert res.returncode == 2
    assert "--data-dir" in res.stderr and "AUGSCALE_DATA_DIR" in res.stderr and "Hub" in res.stderr
    assert "Traceback" not in res.stderr


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_malformed_jsonl_line_named(tmp_path):
    good = json.dumps({"question": "What is 1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"})
    _write(tmp_path / "gsm8k" / "train.jsonl", good + "\n" + good + "\n{not json\n")
    _write(tmp_path / "gsm8k" / "test.jsonl", good + "\n")
    res = run_cli("data", "prepare", "gsm8k", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 2
    assert f"{tmp_path / 'gsm8k' / 'train.jsonl'}:3: malformed JSON line" in res.stderr
    assert not (tmp_path / "c" / "gsm8k").exists() or not any((tmp_path / "c" / "gsm8k").iterdir())


def test_csv_missing_column_named(tmp_path):
    for split in ("train", "valid", "test"):
        _write(tmp_path / f"{split}.csv", "mr,sentence\n\"inform(name[X])\",X is a game.\n")
    with pytest.raises(RawDataError) as e:
        prepare(get_task("viggo"), data_dir=tmp_path, cache_dir=tmp_path / "c")
    assert "train.csv: missing column(s) ['ref']" in str(e.value)


def test_empty_file_named(tmp_path):
    _write(tmp_path / "train.jsonl", "")
    res = run_cli("data", "prepare", "jsonl", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 2
    assert f"{tmp_path / 'train.jsonl'}: empty file" in res.stderr


def test_jsonl_task_columns_and_auto_splits(tmp_path):
    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(400)]
    _write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    res = run_cli("data", "prepare", "jsonl", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
                  "--input-col", "q", "--target-col", "a", "--name", "mine", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert sum(summary["rows"].values()) == 400 and summary["rows"]["test"] > 0 and summary["rows"]["valid"] > 0
    bad = run_cli("data", "prepare", "jsonl", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
                  "--input-col", "question", "--target-col", "a")
    assert bad.returncode == 2 and "train.jsonl:1: missing field(s) ['question']" in bad.stderr


def test_jsonl_task_reads_csv_and_parquet_with_a_context_column(tmp_path):
    import csv

    from augscale.datasets_cache import Snapshot

    with (tmp_path / "train.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["doc", "q", "a"])
        w.writerows([f"table t{i} (x INT)", f"question, {i}", f"answer {i}"] for i in range(200))
    pl.DataFrame({"doc": ["schema z"] * 20, "q": [f"test q {i}" for i in range(20)],
                  "a": [f"test a {i}" for i in range(20)]}).write_parquet(tmp_path / "test.parquet")
    args = ["data", "prepare", "jsonl", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c"),
            "--input-col", "q", "--target-col", "a", "--name", "mixed"]
    res = run_cli(*args, "--context-col", "doc", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rows"]["test"] == 20 and summary["rows"]["train"] + summary["rows"]["valid"] == 200
    snap = Snapshot.open(Path(summary["path"]))
    test = snap.read("test").sort("id")
    assert test["context"].to_list() == ["schema z"] * 20 and test["prompt"][0].startswith("test q")
    train = snap.read("train")
    row = train.filter(pl.col("prompt") == "question, 7").row(0, named=True)  # the CSV's quoted comma kept
    assert row["context"] == "table t7 (x INT)" and row["target"] == "answer 7"
    # a Parquet file without the named column: the file and the columns it has
    bad = run_cli(*args, "--context-col", "nope")
    assert bad.returncode == 2 and "missing column(s) ['nope']" in bad.stderr

    # `data list`: with --cache-dir, and from AUGSCALE_CACHE_DIR
    for listed in (run_cli("data", "list", "--cache-dir", str(tmp_path / "c"), "--json"),
                   run_cli("data", "list", "--json", env={"AUGSCALE_CACHE_DIR": str(tmp_path / "c")})):
        assert listed.returncode == 0, listed.stderr
        items = json.loads(listed.stdout.strip().splitlines()[-1])["snapshots"]
        assert [(i["task"], i["path"]) for i in items] == [("jsonl", summary["path"])]


def test_default_cache_dir_is_the_user_cache_not_the_tree(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUGSCALE_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    _write(tmp_path / "data" / "train.jsonl", "".join(json.dumps({"input": f"q{i}", "target": "a"}) + "\n"
                                                      for i in range(50)))
    res = subprocess.run([sys.executable, "-m", "augscale.cli", "data", "prepare", "jsonl", "--data-dir",
                          str(tmp_path / "data"), "--json"], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    path = Path(json.loads(res.stdout.strip().splitlines()[-1])["path"])
    assert path.is_relative_to(tmp_path / "xdg" / "augscale")


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch, data_dir):
    """A failure while writing leaves no snapshot folder behind (temp folder renamed into place only at the end)."""
    from augscale.datasets_cache import snapshot as snapmod

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(KeyboardInterrupt):
        snapmod.prepare(get_task("viggo"), data_dir=data_dir, cache_dir=tmp_path)
    assert list((tmp_path / "viggo").iterdir()) == []


def test_unknown_task_suggests(tmp_path):
    res = run_cli("data", "prepare", "gms8k", "--data-dir", "x")
    assert res.returncode == 2 and "Did you mean 'gsm8k'?" in res.stderr and "viggo" in res.stderr


def test_data_show_prints_special_tokens(data_dir, cache_dir):
    res = run_cli("data", "show", "sql", "-n", "2", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("<START_Q>CREATE TABLE") == 2 and res.stdout.count("<END_A>") == 2
