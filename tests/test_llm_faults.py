"""The LLM generator under faults, and LLM strategies through the real augment pipeline (Ray Data)
against a local OpenAI-compatible server: 20% faulty responses, a budget, kill -9 and resume, and
an API key that must appear nowhere."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from augscale.augment.llm.generator import GeneratorError, LLMGenerator, TokenBucket, budget_reason, cost_usd
from augscale.config import AugmentConfig, validate_config
from augscale.llm.endpoint import to_messages
from fake_openai import Fault, FakeOpenAI, count_tokens
from proc_util import session_pids

# ----- a fake LLM that evolves gsm8k problems and solves them ------------------------------------
NAMES = ["Ava", "Ben", "Cleo", "Dev", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Milo", "Nora",
         "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess"]
ITEMS = ["stamps", "shells", "marbles", "stickers", "acorns", "pebbles", "buttons", "coins", "feathers", "leaves",
         "cards", "beads", "tickets", "badges", "corks", "keys", "pins", "ribbons", "tokens", "bottle caps"]
PROBLEM_RE = re.compile(r"(\w+) collects (\d+) ([\w ]+?) every day for (\d+) days and then gives away (\d+) of them")


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def new_problem(seed_question: str) -> str:
    h = _h(seed_question)
    name, item = NAMES[h % 20], ITEMS[(h >> 8) % 20]
    a, b = 3 + (h >> 16) % 40, 2 + (h >> 24) % 9
    c = 1 + (h >> 32) % (a * b - 1)
    return (f"{name} collects {a} {item} every day for {b} days and then gives away {c} of them. "
            f"How many {item} does {name} keep?")


def solve(question: str) -> str:
    name, a, item, b, c = PROBLEM_RE.search(question).groups()
    a, b, c = int(a), int(b), int(c)
    return (f"{name} collects {a}*{b} = <<{a}*{b}={a * b}>>{a * b} {item}.\n"
            f"After giving away {c}, {name} keeps {a * b}-{c} = <<{a * b}-{c}={a * b - c}>>{a * b - c} {item}.\n"
            f"#### {a * b - c}")


def kind_of(seed_question: str) -> str:
    """What the fake does for a seed: most answer well; some refuse or answer without ``#### n``."""
    r = _h("kind" + seed_question) % 10
    return "refuse" if r == 0 else "no_final" if r == 1 else "good"


def responder(body: dict) -> str:
    text = body["messages"][-1]["content"]
    if "Write a new grade-school math word problem" in text:
        seed_q = text.rsplit("\nProblem:", 1)[1].split("\nNew problem:")[0].strip()
        if kind_of(seed_q) == "refuse":
            return "I'm sorry, but I can't help with that."
        return "New problem: " + new_problem(seed_q)
    question = text.rsplit("\nQuestion:", 1)[1].split("\nAnswer:")[0].strip()
    m = PROBLEM_RE.search(question)
    if m is None:
        return "I do not know."
    if _h("kind-final" + question) % 4 == 0:
        return solve(question).rsplit("\n####", 1)[0]  # malformed: no final answer
    return solve(question)


def faults_20pct(n: int, body: dict):
    """About 20% of requests fail: 429 with Retry-After, 500, a time-out, or a body that is not JSON."""
    rng = random.Random(n)
    if rng.random() >= 0.2:
        return None
    return rng.choice([Fault.rate_limit(retry_after=0.05), Fault.server_error(), Fault.timeout(seconds=1.0),
                       Fault.malformed()])


def augment_config(snapshot, cache_dir: Path, server_url: str, **over) -> dict:
    gen = {"base_url": server_url, "model": "fake-model", "api_key_env": "AUGSCALE_TEST_KEY", "concurrency": 4,
           "timeout_s": 0.5, "max_attempts": 6, "initial_backoff_s": 0.02, "max_backoff_s": 0.2,
           **over.pop("generator", {})}
    cfg = {"kind": "augment", "task": {"name": "gsm8k"},
           "data": {"snapshot": str(snapshot.path), "cache_dir": str(cache_dir)},
           "name": "llm", "strategies": [{"name": "evolve", "params": {"samples": 2, "min_agreement": 0.5}}],
           "target_size": 1000, "max_seeds": 24, "block_size": 6, "concurrency": 1, "generator": gen, **over}
    return validate_config(AugmentConfig, cfg).model_dump(mode="json")


# ----- the generator alone ------------------------------------------------------------------------
def test_generator_honours_retry_after_counts_usage_and_cost():
    waits = []
    with FakeOpenAI("#### 5", faults=[Fault.rate_limit(retry_after=0.3), Fault.server_error()]) as server:
        gen = LLMGenerator(server.url, "fake-model", concurrency=1, max_attempts=3, initial_backoff_s=0.01,
                           jitter=0.0, price_input_per_mtok=2.0, price_output_per_mtok=10.0, sleep=waits.append)
        r = gen.chat(to_messages("What is 2+3?"), n=2)
        gen.close()
    assert r.ok and r.texts == ["#### 5", "#### 5"] and r.attempts == 3
    assert waits == [0.3, 0.02]  # Retry-After as given; then exponential back-off (0.01 * 2)
    u = gen.usage()
    prompt_tokens = count_tokens("What is 2+3?")
    assert u["requests"] == 1 and u["attempts"] == 3 and u["prompt_tokens"] == prompt_tokens
    assert u["completion_tokens"] == 4 and u["tokens"] == prompt_tokens + 4
    assert u["cost_usd"] == pytest.approx(cost_usd(prompt_tokens, 4, 2.0, 10.0)) == pytest.approx((prompt_tokens * 2 + 40) / 1e6)


def test_generator_budget_stops_new_requests():
    with FakeOpenAI("one two three four") as server:
        gen = LLMGenerator(server.url, "fake-model", concurrency=1, budget_tokens=20)
        results = [gen.chat(to_messages("a b c d e f")) for _ in range(5)]  # 6 + 4 tokens each
        gen.close()
        assert server.request_count == 2
    assert [r.ok for r in results] == [True, True, False, False, False]
    assert results[2].error.startswith("budget_exhausted: token budget spent: 20 of 20 tokens")
    assert gen.usage()["skipped_for_budget"] == 3
    assert budget_reason({"cost_usd": 1.5}, budget_usd=1.0) == "cost budget spent: $1.5000 of $1.0000"


def test_generator_stops_when_most_requests_fail_and_scrubs_the_key(monkeypatch):
    key = "sk-test-" + "q7Zr2" * 6
    monkeypatch.setenv("AUGSCALE_TEST_KEY", key)
    with FakeOpenAI("#### 1", faults=lambda n, body: Fault.error(500, f"bad request from key {key}")) as server:
        gen = LLMGenerator(server.url, "fake-model", api_key_env="AUGSCALE_TEST_KEY", concurrency=4, max_attempts=1,
                           min_requests_for_rate=8, max_failure_rate=0.5)
        first = gen.chat(to_messages("hi"))
        assert first.error == "server_error: bad request from key *** (after 1 attempt)"
        with pytest.raises(GeneratorError, match="failed after every retry") as err:
            gen.map(lambda i: gen.chat(to_messages(f"q{i}")), list(range(20)))
        gen.close()
    assert key not in str(err.value) and key not in repr(gen) and "AUGSCALE_TEST_KEY" in repr(gen)


def test_a_refused_key_stops_the_run_without_quoting_it(monkeypatch):
    from augscale.llm.endpoint import EndpointError

    key = "sk-test-" + "Hh4u1" * 6
    monkeypatch.setenv("AUGSCALE_TEST_KEY", key)
    with FakeOpenAI("#### 1", faults=lambda n, body: Fault.error(401, f"Incorrect API key provided: {key}")) as server:
        gen = LLMGenerator(server.url, "fake-model", api_key_env="AUGSCALE_TEST_KEY")
        with pytest.raises(EndpointError, match="401: Incorrect API key provided: \\*\\*\\*") as err:
            gen.chat(to_messages("hi"))
        gen.close()
        assert server.request_count == 1  # not retried: no retry can fix it
    assert key not in str(err.value)


def test_token_bucket_waits_for_the_rate():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        bucket.acquire(1)
    assert slept == [0.5, 0.5]  # 2 at once (the burst), then one every 1/rate seconds
    bucket.acquire(10)          # larger than the capacity: waits for a full bucket, leaves a debt
    assert slept[-1] == 1.0 and bucket.level == -8.0
    bucket.give_back(3)         # the request used fewer tokens than estimated
    assert bucket.level == -5.0
    # the generator's buckets: the run's limits, this actor's share, per second
    gen = LLMGenerator("http://127.0.0.1:9/v1", "m", requests_per_minute=120, tokens_per_minute=6000, limit_share=0.5)
    assert (gen._rpm.rate, gen._tpm.rate, gen._tpm.capacity) == (1.0, 50.0, 3000.0)
    gen.close()


def test_generator_native_n_off_sends_one_request_per_sample():
    with FakeOpenAI("#### 5") as server:
        gen = LLMGenerator(server.url, "fake-model", native_n=False, concurrency=1)
        r = gen.chat(to_messages("q"), n=3)
        gen.close()
        assert r.texts == ["#### 5"] * 3 and server.request_count == 3
        assert all(b.get("n") == 1 for b in server.requests)


# ----- the pipeline -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fault_run(gsm8k_snapshot, tmp_path_factory, ray_session):
    """One augment run (evolve, 24 seeds in 4 blocks) against a server failing 20% of responses."""
    from augscale.augment.run import run_augment

    cache = tmp_path_factory.mktemp("llm-faults")
    with FakeOpenAI(responder, latency=0.01, faults=faults_20pct) as server:
        cfg = validate_config(AugmentConfig, augment_config(gsm8k_snapshot, cache, server.url))
        result = run_augment(cfg, progress=False)
        injected = sum(faults_20pct(n, {}) is not None for n in range(1, server.request_count + 1))
        yield result, server.request_count, injected


def test_faults_run_completes_with_each_accepted_row_once(fault_run, gsm8k_snapshot):
    result, requests, injected = fault_run
    m = result.snapshot.manifest
    rows = result.snapshot.read("train")
    assert requests > 48 and injected >= 0.1 * requests  # 2 requests per seed, plus the retries of the faults
    assert rows.height > 0 and rows["id"].n_unique() == rows.height and rows["prompt"].n_unique() == rows.height
    seeds = {r["id"]: r["prompt"] for r in gsm8k_snapshot.scan("train").head(24).collect().to_dicts()}
    for r in rows.to_dicts():
        assert r["source"] == "evolve" and r["parent_id"] in seeds and r["id"] == f"{r['parent_id']}~evolve-0"
        assert r["prompt"] == new_problem(seeds[r["parent_id"]]) and r["target"] == solve(r["prompt"])
    counts = m["counts"]["evolve"]
    assert counts["candidates"] == 24 and counts["accepted"] == rows.height
    # every seed is accounted for: accepted, or rejected with a reason
    assert counts["accepted"] + sum(counts["rejected"].values()) == 24
    expected_refusals = sum(kind_of(q) == "refuse" for q in seeds.values())
    assert counts["rejected"].get("refusal", 0) == expected_refusals > 0
    no_final = sum(kind_of(q) != "refuse" and _h("kind-final" + new_problem(q)) % 4 == 0 for q in seeds.values())
    assert counts["rejected"].get("no_valid_solution", 0) == no_final > 0  # malformed text: no "#### n"
    assert not any(r.startswith("request_") for r in counts["rejected"])  # every fault was retried away
    usage = m["usage"]["evolve"]
    assert usage["attempts"] == requests > usage["requests"]  # the server saw every try; retries happened
    assert usage["failed_requests"] == 0 and usage["tokens"] > 0


def test_fault_run_rows_keep_template_hashes(fault_run):
    from augscale.augment.llm.prompts import load_template

    result, _, _ = fault_run
    meta = json.loads(result.snapshot.read("train")["meta"][0])
    assert meta["evolve"]["prompts"] == {"evolve": load_template("gsm8k_evolve").evidence(),
                                        "solve": load_template("gsm8k_solve").evidence()}
    assert meta["evolve"]["usage"]["requests"] == 2 and meta["verify"]["steps"] == 2


def test_budget_stops_the_run_and_keeps_what_was_accepted(gsm8k_snapshot, tmp_path, ray_session):
    from augscale.augment.run import run_augment

    def run(**generator):
        with FakeOpenAI(responder) as server:
            cfg = validate_config(AugmentConfig, augment_config(gsm8k_snapshot, tmp_path, server.url,
                                                                generator=generator))
            return run_augment(cfg, progress=False), len(server.requests)

    result, first_sent = run(budget_tokens=2500)
    m = result.snapshot.manifest
    assert "token budget spent" in m["stopped"]["evolve"]
    assert result.summary["stopped"] == m["stopped"]
    # the first block (~1,900 tokens) finished; the actor's spend passed the budget within the
    # second, whose remaining requests were not sent: that block is not persisted, a rerun redoes it
    work_dir = Path(m["strategies"]["evolve"]["work_dir"])
    files = list(work_dir.glob("*.parquet"))
    assert len(files) == 1 and "budget_exhausted" not in pl.read_parquet(files)["reject"].to_list()
    first_block = m["usage"]["evolve"]["tokens"]
    assert 0 < first_block < 2500 and m["counts"]["evolve"]["candidates"] == 6
    assert result.snapshot.read("train").height > 0

    # the same budget again: the actor gets only what is left (~600 tokens), not a second 2,500
    # (with which it would finish and persist the ~1,900-token second block): nothing new is
    # persisted, the snapshot stays the partial one
    again, sent = run(budget_tokens=2500)
    assert again.snapshot.path == result.snapshot.path
    assert "token budget spent" in again.snapshot.manifest["stopped"]["evolve"]
    assert len(list(work_dir.glob("*.parquet"))) == 1 and 0 < sent < first_sent
    # a spent budget sends nothing at all
    spent, sent = run(budget_tokens=first_block)
    assert sent == 0 and spent.snapshot.manifest["stopped"]["evolve"].startswith("token budget spent")

    # no budget: the run goes on from the block on disk and replaces the partial snapshot
    full, sent = run()
    fm = full.snapshot.manifest
    assert full.created and full.snapshot.path == result.snapshot.path and fm["stopped"] == {}
    assert fm["counts"]["evolve"]["candidates"] == 24 and len(list(work_dir.glob("*.parquet"))) == 4
    assert sent > 0 and set(result.snapshot.read("train")["id"]) <= set(full.snapshot.read("train")["id"])
    # and now it is the cached, finished snapshot
    cached, sent = run()
    assert not cached.created and sent == 0 and cached.snapshot.manifest["version"] == fm["version"]


def test_cost_budget_stops_the_run(gsm8k_snapshot, tmp_path, ray_session):
    """budget_usd as budget_tokens: at $1 per million tokens, $0.0025 is the 2,500 tokens above."""
    from augscale.augment.run import run_augment

    with FakeOpenAI(responder) as server:
        cfg = validate_config(AugmentConfig, augment_config(
            gsm8k_snapshot, tmp_path, server.url,
            generator={"budget_usd": 0.0025, "price_input_per_mtok": 1.0, "price_output_per_mtok": 1.0}))
        result = run_augment(cfg, progress=False)
    m = result.snapshot.manifest
    assert "cost budget spent" in m["stopped"]["evolve"]
    usage = m["usage"]["evolve"]
    assert usage["cost_usd"] == pytest.approx(usage["tokens"] / 1e6) and 0 < usage["cost_usd"] < 0.0025
    assert m["counts"]["evolve"]["candidates"] == 6 and result.snapshot.read("train").height > 0


def test_answer_augment_rows_keep_their_seed_question(gsm8k_snapshot, tmp_path, ray_session):
    """New solutions of the seeds' own questions pass the filters: dedup is on question and solution."""
    from augscale.augment.run import run_augment

    seeds = {r["prompt"]: r for r in gsm8k_snapshot.scan("train").head(12).collect().to_dicts()}

    def solutions(body):
        question = body["messages"][-1]["content"].rsplit("\nQuestion:", 1)[1].split("\nAnswer:")[0].strip()
        return "Let us work it out.\n" + seeds[question]["target"]

    with FakeOpenAI(solutions) as server:
        cfg = augment_config(gsm8k_snapshot, tmp_path, server.url, max_seeds=12,
                             strategies=[{"name": "answer_augment", "params": {"samples": 2}}])
        result = run_augment(validate_config(AugmentConfig, cfg), progress=False)
    rows = result.snapshot.read("train")
    counts = result.snapshot.manifest["counts"]["answer_augment"]
    assert rows.height == counts["accepted"] > 0 and set(rows["prompt"]) <= set(seeds)
    assert counts["rejected"].get("duplicate_solution") == 12  # the second sample, identical to the first
    assert not {"duplicate", "near_duplicate"} & set(counts["rejected"])
    for r in rows.to_dicts():
        assert r["target"] == "Let us work it out.\n" + seeds[r["prompt"]]["target"]


# ----- kill -9, rerun; the key nowhere -------------------------------------------------------------


def _contains(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


def test_kill_9_then_rerun_resends_no_finished_block_and_never_writes_the_key(gsm8k_snapshot, tmp_path):
    key = "sk-test-" + "Xk93v" * 8
    seeds = [r["prompt"] for r in gsm8k_snapshot.scan("train").head(24).collect().to_dicts()]
    echo = {s for s in seeds if kind_of(s) == "good"}
    echo = set(sorted(echo)[:1])  # one seed whose requests always fail with the key in the error

    def faults(n, body):
        text = body["messages"][-1]["content"]
        if any(s in text for s in echo):
            return Fault.error(500, f"upstream refused the key {key}")
        return None

    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))
    cache = tmp_path / "cache"
    env = {**os.environ, "AUGSCALE_TEST_KEY": key, "RAY_TMPDIR": str(ray_tmp), "AUGSCALE_CACHE_DIR": str(cache)}
    with FakeOpenAI(responder, latency=0.15, faults=faults) as server:
        cfg = augment_config(gsm8k_snapshot, cache, server.url, block_size=4,
                             generator={"concurrency": 2, "max_attempts": 2, "timeout_s": 5})
        cfg_path = tmp_path / "llm.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "augscale.cli", "augment", str(cfg_path), "--json", "--no-progress"]
        log1 = open(tmp_path / "run1.log", "wb")
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log1, stderr=subprocess.STDOUT)
        work_root = cache / "gsm8k" / "augmented" / ".work"
        deadline = time.time() + 150
        done: list[Path] = []
        while time.time() < deadline and proc.poll() is None:
            done = sorted(work_root.glob("*/*/[0-9]*.parquet"))
            if len(done) >= 2:
                break
            time.sleep(0.05)
        for pid in session_pids(proc.pid):  # kill -9 the run: driver, Ray's services and workers
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        log1.close()
        while session_pids(proc.pid) and time.time() < deadline + 30:
            time.sleep(0.2)
        done = sorted(work_root.glob("*/*/[0-9]*.parquet"))
        assert 2 <= len(done) < 6, "the run must be killed mid-way"
        finished = pl.read_parquet(done)["parent_id"].unique().to_list()
        finished_q = {r["id"]: r["prompt"] for r in gsm8k_snapshot.scan("train").head(24).collect().to_dicts()
                      if r["id"] in finished}
        before = server.request_count

        rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=240)
        assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
        later = server.requests[before:]
    assert later, "the rerun must send the unfinished blocks' requests"
    asked = [body["messages"][-1]["content"].rsplit("\n\n", 1)[-1] for body in later]  # past the template's example
    resent = [(pid, a) for a in asked for pid, q in finished_q.items() if q in a]
    assert not resent, f"a finished block's request was sent again: {resent[:3]}"
    summary = json.loads(rerun.stdout.decode().strip().splitlines()[-1])
    snap = Path(summary["path"])
    rows = pl.read_parquet(snap / "train.parquet")
    assert rows.height == summary["rows"] > 0 and rows["id"].n_unique() == rows.height
    assert summary["counts"]["evolve"]["candidates"] == 24
    assert summary["counts"]["evolve"]["rejected"].get("request_server_error") == 1
    # the server's error echoed the key; what was written keeps the error, scrubbed
    blocks = pl.read_parquet(sorted(work_root.glob("*/*/[0-9]*.parquet")))
    assert blocks["meta"].str.contains("upstream refused the key ***", literal=True).any()
    needle = key.encode()
    outputs = (tmp_path / "run1.log").read_bytes() + rerun.stdout + rerun.stderr
    assert needle not in outputs
    assert _contains(cache, needle) == []      # snapshot, manifest, block files, seeds
    assert _contains(ray_tmp, needle) == []    # Ray's session logs of both runs
    assert "AUGSCALE_TEST_KEY" in (snap / "manifest.json").read_text()  # the variable's name is kept
