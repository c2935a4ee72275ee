"""The augment pipeline end to end on Ray Data: snapshot, manifest, cache, resume, decontamination, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from augscale.augment import blocks
from augscale.augment.pipeline import StrategySpec, augment
from augscale.augment.run import run_augment
from augscale.augment.strategies import (Candidate, Strategy, StrategyError, get_strategy, register_strategy,
                                         strategy_names)
from augscale.config import AugmentConfig, ConfigError, load_config, validate_config
from augscale.datasets_cache.snapshot import RECORD_SCHEMA
from augscale.tasks import RawDataError, UnknownNameError, get_task
from test_substitute import check_gsm8k_row
from proc_util import session_pids

REPO = Path(__file__).resolve().parents[1]


def words(text: str) -> list[str]:
    """Independent of augscale.augment.dedup: lowercase alphanumeric words (apostrophes and
    thousands separators dropped)."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower().replace("'", "").replace("\u2019", ""))
    return re.findall(r"[a-z0-9]+", text)


def ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {tuple(w)}


def make_config(data_dir, cache_dir, **over) -> AugmentConfig:
    cfg = {"task": {"name": "gsm8k"}, "data": {"data_dir": str(data_dir), "cache_dir": str(cache_dir)},
           "name": "t", "strategies": [{"name": "substitute", "params": {"variants_per_seed": 2}}],
           "target_size": 150, "max_seeds": 240, "block_size": 40, "concurrency": 2}
    cfg.update(over)
    return validate_config(AugmentConfig, cfg, "test")


@pytest.fixture(scope="module")
def gsm8k_run(data_dir, cache_dir, gsm8k_snapshot, ray_session):
    cfg = make_config(data_dir, cache_dir)
    return cfg, run_augment(cfg, progress=False)


# ----- names and configs ----------------------------------------------------------------------
def test_registry_names_errors_and_duplicates():
    assert "substitute" in strategy_names("gsm8k") and "substitute" in strategy_names("viggo")
    with pytest.raises(UnknownNameError) as e:
        get_strategy("substitue", "gsm8k")
    assert "Did you mean 'substitute'?" in str(e.value) and re.search(r"Valid: .*substitute", str(e.value))
    with pytest.raises(StrategyError) as e:
        get_strategy("substitute", "jsonl")
    assert "not available for task 'jsonl'" in str(e.value) and "gsm8k, sql, viggo" in str(e.value)

    class Another(Strategy):
        name, task = "substitute", "gsm8k"

    with pytest.raises(ValueError, match="already registered"):
        register_strategy(Another)


def test_config_errors_name_the_file_and_fix(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("task: {name: gsm8k}\nstrategies: [{name: substitue}]\ntarget_size: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad, AugmentConfig)
    assert str(bad) in str(e.value) and "strategies.0.name" in str(e.value) and "Did you mean 'substitute'" in str(e.value)
    bad.write_text("task: {name: gsm8k}\nstrategies: [{name: substitute, params: {variants: 3}}]\ntarget_size: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad, AugmentConfig)
    assert "variants: Extra inputs" in str(e.value) and "Allowed keys: max_tries, variants_per_seed" in str(e.value)
    bad.write_text("task: {name: jsonl}\nstrategies: [{name: substitute}]\ntarget_size: 10\n")
    with pytest.raises(ConfigError, match="not available for task 'jsonl'"):
        load_config(bad, AugmentConfig)
    bad.write_text("task: {name: gsm8k}\nstrategies: [{name: substitute}, {name: substitute}]\ntarget_size: 10\n")
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(bad, AugmentConfig)
    for path in sorted((REPO / "configs" / "augment").glob("*.yaml")):
        assert load_config(path, AugmentConfig).strategies


def test_selection_shares_redistribution_and_parent_coverage():
    from augscale.augment.select import allocate, select_rows, split_quotas

    assert split_quotas(10, {"a": 2, "b": 1}) == {"a": 7, "b": 3}
    assert allocate(10, {"a": 2, "b": 1}, {"a": 100, "b": 1}) == {"a": 9, "b": 1}  # b's shortfall goes to a
    assert allocate(10, {"a": 1, "b": 1}, {"a": 3, "b": 4}) == {"a": 3, "b": 4}  # 3 short: never loops
    rows = [{"id": f"p{p}~{s}-{i}", "source": s, "parent_id": f"p{p}"}
            for s in ("a", "b") for p in range(5) for i in range(3)]
    survivors = pl.DataFrame(rows)
    sel = select_rows(survivors, shares={"a": 2, "b": 1}, target_size=9, seed=0)
    assert sel.taken == {"a": 6, "b": 3} and sel.shortfall == 0 and len(sel.selected) == 9
    assert len(sel.over_target) == 30 - 9 and not set(sel.selected) & set(sel.over_target)
    picked_a = [i for i in sel.selected if "~a-" in i]
    assert len({i.split("~")[0] for i in picked_a}) == 5  # every parent once before any twice
    shuffled = survivors.sample(fraction=1.0, shuffle=True, seed=3)
    assert select_rows(shuffled, shares={"a": 2, "b": 1}, target_size=9, seed=0).selected == sel.selected
    assert select_rows(survivors, shares={"a": 2, "b": 1}, target_size=9, seed=1).selected != sel.selected


# ----- the pipeline -----------------------------------------------------------------------------
def test_gsm8k_snapshot_rows_manifest_and_every_annotation(gsm8k_run, gsm8k_snapshot):
    cfg, result = gsm8k_run
    snap = result.snapshot
    assert result.created and snap.path.name == f"t-{snap.version}" and snap.path.parent.name == "augmented"
    df = snap.read("train")
    assert dict(df.schema) == RECORD_SCHEMA and df.height == cfg.target_size
    assert df["id"].n_unique() == df.height and set(df["source"]) == {"substitute"} and set(df["split"]) == {"train"}
    seed_ids = set(gsm8k_snapshot.read("train")["id"].head(240))
    for row in df.iter_rows(named=True):
        assert row["parent_id"] in seed_ids and re.fullmatch(re.escape(row["parent_id"]) + r"~substitute-\d", row["id"])
        check_gsm8k_row(row["prompt"], row["target"], row["answer"])
        assert row["difficulty"] == row["target"].count("<<") and json.loads(row["meta"])["substitute"]["substituted"]
    m = snap.manifest
    assert m["kind"] == "augmented" and m["seed_snapshot"]["version"] == gsm8k_snapshot.version
    assert Path(m["seed_snapshot"]["path"]) == gsm8k_snapshot.path and m["target_reached"] and m["shortfall"] == 0
    c = m["counts"]["substitute"]
    assert c["candidates"] == 480 and c["accepted"] == 150
    assert c["accepted"] + sum(c["rejected"].values()) == c["candidates"]
    assert {"near_duplicate", "over_target", "no_substitutable_number"} <= set(c["rejected"])
    assert m["config_hash"] and m["code_version"] and m["seconds"] > 0
    test_grams = set().union(*(ngrams(q) for q in gsm8k_snapshot.read("test")["prompt"]))
    assert not any(ngrams(p) & test_grams for p in df["prompt"])
    s = result.summary
    assert (s["path"], s["version"], s["rows"]) == (str(snap.path), snap.version, 150)


@pytest.mark.slow
def test_shipped_gsm8k_config_doubles_the_training_questions(data_dir, cache_dir, gsm8k_snapshot, ray_session):
    """configs/augment/gsm8k_substitute.yaml as shipped (only the data and cache folders set):
    at least 7,473 accepted new rows, every annotation of every one recomputed independently."""
    cfg = load_config(REPO / "configs" / "augment" / "gsm8k_substitute.yaml", AugmentConfig,
                      [f"data.data_dir={data_dir}", f"data.cache_dir={cache_dir}"])
    result = run_augment(cfg, progress=False)
    df = result.snapshot.read("train")
    assert df.height >= 7473 and result.snapshot.manifest["counts"]["substitute"]["accepted"] == df.height
    for row in df.iter_rows(named=True):
        check_gsm8k_row(row["prompt"], row["target"], row["answer"])
    assert df["prompt"].n_unique() == df.height


def test_rerun_returns_cached_snapshot_without_work(gsm8k_run, data_dir, cache_dir):
    cfg, first = gsm8k_run
    work = Path(first.snapshot.manifest["strategies"]["substitute"]["work_dir"])
    stamps = {p: p.stat().st_mtime_ns for p in work.iterdir()}
    again = run_augment(make_config(data_dir, cache_dir), progress=False)
    assert not again.created and again.snapshot.path == first.snapshot.path
    assert {p: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    # Resource-only settings (block size is the resume grain, concurrency) are not in the version
    # ... but block size names the work folder, so only concurrency is reused as is here.
    assert run_augment(make_config(data_dir, cache_dir, concurrency=1), progress=False).snapshot.path == first.snapshot.path


def test_unreachable_target_finishes_with_what_passed(gsm8k_run, data_dir, cache_dir):
    cfg, first = gsm8k_run
    out = run_augment(make_config(data_dir, cache_dir, target_size=10_000), progress=False)
    m = out.snapshot.manifest
    c = m["counts"]["substitute"]
    assert out.created and not m["target_reached"] and m["shortfall"] == 10_000 - m["rows"]["train"]
    assert "over_target" not in c["rejected"] and c["accepted"] == m["rows"]["train"] > 150
    assert c["candidates"] == 480  # the same candidates (same work folder), never a second pass


def test_seed_file_with_test_questions_yields_no_contaminated_row(data_dir, cache_dir, gsm8k_snapshot,
                                                                  ray_session, tmp_path):
    train = gsm8k_snapshot.read("train").head(40).to_dicts()
    test = gsm8k_snapshot.read("test").head(60).to_dicts()
    lines = [{"question": r["prompt"], "answer": r["target"]} for r in train]
    lines += [{"question": r["prompt"], "answer": r["target"]} for r in test[:30]]  # verbatim
    for i, r in enumerate(test[30:]):  # lightly edited: a word inserted mid-question, one in front, case
        w = r["prompt"].split()
        edited = " ".join(["Now,"] + w[:len(w) // 2] + [("really", "then", "also")[i % 3]] + w[len(w) // 2:])
        lines.append({"question": edited.replace(" the ", " The "), "answer": r["target"]})
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = run_augment(make_config(data_dir, cache_dir, max_seeds=None, target_size=1000, name="mixed"),
                      seeds_file=seeds, progress=False)
    m = out.snapshot.manifest
    assert m["seed_snapshot"]["kind"] == "seeds" and m["seed_file"]["path"] == str(seeds.resolve())
    assert m["counts"]["substitute"]["rejected"]["contaminated"] > 30
    test_grams = set().union(*(ngrams(q) for q in gsm8k_snapshot.read("test")["prompt"]))
    df = out.snapshot.read("train")
    assert df.height > 10 and not any(ngrams(p) & test_grams for p in df["prompt"])
    assert set(df["parent_id"].str.slice(0, 12)) == {"gsm8k-seeds-"}


def test_malformed_seed_file_names_file_and_line(data_dir, cache_dir, tmp_path, monkeypatch, capsys):
    seeds = tmp_path / "bad.jsonl"
    seeds.write_text('{"question": "q", "answer": "a #### 1"}\n{"question": "q2"\n')
    with pytest.raises(RawDataError, match=re.escape(f"{seeds}:2: malformed JSON")):
        run_augment(make_config(data_dir, cache_dir), seeds_file=seeds, progress=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, cache_dir).model_dump(mode="json")))
    from augscale import cli

    monkeypatch.setattr(sys, "argv", ["augscale", "augment", str(cfg), "--seeds", str(seeds)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2 and f"{seeds}:2" in capsys.readouterr().err


def test_cli_json_summary_last_line(gsm8k_run, data_dir, cache_dir, tmp_path):
    from typer.testing import CliRunner

    from augscale.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(make_config(data_dir, cache_dir).model_dump(mode="json")))
    res = CliRunner().invoke(app, ["augment", str(cfg), "--json", "--set", "concurrency=1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["path"] == str(gsm8k_run[1].snapshot.path) and summary["rows"] == 150
    assert summary["version"] == gsm8k_run[1].snapshot.version and summary["counts"]["substitute"]["accepted"] == 150


@pytest.mark.parametrize("task,seeds", [("viggo", 150), ("sql", 300)])
def test_viggo_and_sql_substitute_produce_verified_rows(task, seeds, data_dir, cache_dir, ray_session):
    cfg = make_config(data_dir, cache_dir, task={"name": task}, max_seeds=seeds, target_size=60, name=task,
                      block_size=100)
    out = run_augment(cfg, progress=False)
    df = out.snapshot.read("train")
    c = out.snapshot.manifest["counts"]["substitute"]
    assert df.height == 60 and c["verified"] > 60 and c["accepted"] + sum(c["rejected"].values()) == c["candidates"]
    t = get_task(task)
    for row in df.iter_rows(named=True):
        assert t.verify(row).ok and row["parent_id"] and row["source"] == "substitute"
    if task == "viggo":  # every swapped value: the new one is in the new sentence, the old one gone
        from augscale.tasks.viggo import parse_mr

        seeds_path = Path(out.snapshot.manifest["seed_snapshot"]["path"]) / "train.parquet"
        parents = {r["id"]: r for r in pl.read_parquet(seeds_path).to_dicts()}
        swapped = 0
        for row in df.iter_rows(named=True):
            old_mr, new_mr = parse_mr(parents[row["parent_id"]]["target"]), parse_mr(row["target"])
            assert old_mr.function == new_mr.function and old_mr.names == new_mr.names
            sentence = row["prompt"].lower()
            for name in new_mr.names:
                old_items = {v.strip().lower() for v in (old_mr.values(name) or "").split(",")} - {""}
                new_items = {v.strip().lower() for v in (new_mr.values(name) or "").split(",")} - {""}
                for item in new_items - old_items:
                    assert item in sentence, (name, item, row["prompt"])
                    swapped += 1
                for item in old_items - new_items:
                    assert not re.search(rf"\b{re.escape(item)}\b", sentence), (name, item, row["prompt"])
        assert swapped >= df.height  # at least one value per row
    if task == "sql":
        from augscale.augment.substitute_sql import non_empty_on_synthesized

        assert all(non_empty_on_synthesized(r["context"], r["target"], seed=0)[0] for r in df.iter_rows(named=True))
        assert df["context"].null_count() == 0


# ----- an LLM-shaped strategy: per-block usage, a budget, its own actor pool --------------------
class Restate(Strategy):
    """Test strategy shaped like an LLM one: spends 'tokens' per seed, stops on a budget."""

    name, task = "restate_test", "gsm8k"

    @classmethod
    def ray_options(cls, **kwargs):
        return {"num_cpus": 0.5, "concurrency": 1}

    @classmethod
    def budget_exhausted(cls, usage, max_tokens=0, **kwargs):
        return f"token budget {max_tokens} spent" if usage.get("tokens", 0) >= max_tokens else None

    def generate(self, seeds):
        self._used = 10 * len(seeds)
        for s in seeds:
            yield Candidate(s["id"], 0, prompt="Restated: " + s["prompt"], target=s["target"])

    def block_usage(self):
        return {"tokens": self._used}


def test_budget_stops_launching_blocks_and_finishes_with_what_passed(gsm8k_snapshot, cache_dir, ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the class travels to the actor
    out = augment(get_task("gsm8k"), seed_snapshot=gsm8k_snapshot, eval_snapshot=gsm8k_snapshot,
                  strategies=[StrategySpec(Restate, 1.0, {"max_tokens": 300})], target_size=1000, name="budget",
                  cache_dir=cache_dir, max_seeds=200, block_size=10, progress=False)
    m = out.snapshot.manifest
    assert m["stopped"] == {"restate_test": "token budget 300 spent"} and m["usage"]["restate_test"] == {"tokens": 300}
    assert len(list(Path(m["strategies"]["restate_test"]["work_dir"]).glob("*.parquet"))) == 3
    assert m["counts"]["restate_test"]["candidates"] == 30 and not m["target_reached"]


# ----- kill -9 and resume ---------------------------------------------------------------------------


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_rows(gsm8k_run, data_dir, tmp_path):
    # The uninterrupted run is the module's (blocks of 40, two actors); this one uses blocks of 20
    # and one actor, which are resource settings: the snapshot must come out the same.
    over = {"block_size": 20, "concurrency": 1}
    killed_cache = tmp_path / "killed"
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(data_dir, killed_cache, **over).model_dump(mode="json")))
    env = {**os.environ, "AUGSCALE_CACHE_DIR": str(killed_cache)}
    proc = subprocess.Popen([sys.executable, "-m", "augscale.cli", "augment", str(cfg_path), "--json"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work_root = killed_cache / "gsm8k" / "augmented" / ".work"
    deadline = time.time() + 150
    done_at_kill: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        done_at_kill = sorted(work_root.glob("*/*/[0-9]*.parquet"))
        if len(done_at_kill) >= 2:
            break
        time.sleep(0.02)
    for pid in session_pids(proc.pid):  # kill -9 the run: driver, Ray services and workers
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    while session_pids(proc.pid) and time.time() < deadline + 30:
        time.sleep(0.2)
    assert 2 <= len(done_at_kill) < 12, "the run must be killed mid-way"
    stamps = {p: p.stat().st_mtime_ns for p in done_at_kill}
    assert not list((killed_cache / "gsm8k" / "augmented").glob("t-*"))  # no snapshot yet

    resumed = run_augment(make_config(data_dir, killed_cache, **over), progress=False)
    assert {p: p.stat().st_mtime_ns for p in done_at_kill} == stamps  # finished blocks were not redone
    work = Path(resumed.snapshot.manifest["strategies"]["substitute"]["work_dir"])
    assert len(blocks.finished_blocks(work)) == 12
    clean = gsm8k_run[1].snapshot
    a, b = resumed.snapshot.read("train"), clean.read("train")
    assert resumed.snapshot.version == clean.version and a["id"].n_unique() == a.height == 150
    assert a.equals(b)
    assert resumed.snapshot.manifest["counts"] == clean.manifest["counts"]
