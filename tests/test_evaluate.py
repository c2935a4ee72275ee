"""`augscale evaluate`: a tiny local model on Ray Data (CPU) and an endpoint (the fake server), 50 gsm8k items."""

from __future__ import annotations

import json

import polars as pl
import pytest
from fake_openai import Fault, FakeOpenAI
from typer.testing import CliRunner

from augscale.evaluate.prompts import build_prompt, pick_shots
from augscale.evaluate.run import EvaluationError, evaluate_model
from augscale.tasks import get_task

PRED_COLUMNS = {"id", "prompt", "prediction", "reference", "output_tokens", "prompt_tokens", "finish_reason",
                "generation_error", "ref_loss", "extracted", "correct", "correct_flexible", "format_valid"}
METRIC_KEYS = {"task", "split", "n", "accuracy", "ci95", "accuracy_flexible", "mean_output_tokens",
               "format_validity", "reference_loss", "generation_errors", "snapshot", "version"}


def invoke(*args: str):
    from augscale.cli import app

    res = CliRunner().invoke(app, ["evaluate", *args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def test_evaluate_local_model_cpu_writes_both_files(tiny_model, gsm8k_snapshot, ray_session, tmp_path):
    out = tmp_path / "run"
    res = invoke("gsm8k", "--model", str(tiny_model), "--limit", "50", "--max-new-tokens", "24",
                 "--snapshot", str(gsm8k_snapshot.path), "--device", "cpu", "--out-dir", str(out), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])  # --json: the last stdout line
    metrics = json.loads((out / "metrics.json").read_text())
    assert summary["accuracy"] == metrics["accuracy"] and METRIC_KEYS <= set(metrics)
    assert metrics["n"] == 50 and metrics["prompt_style"] == "tokens" and metrics["split"] == "test"
    assert 0 < metrics["mean_output_tokens"] <= 24 and 0 <= metrics["format_validity"] <= 1
    # a random 2k-vocabulary model: about ln(2000) = 7.6 nats per reference token
    assert 6.5 < metrics["reference_loss"] < 8.5
    df = pl.read_parquet(out / "predictions.parquet")
    assert df.height == 50 and PRED_COLUMNS <= set(df.columns)
    assert df["id"].to_list() == gsm8k_snapshot.read("test")["id"].head(50).to_list()
    assert df["prompt"][0].startswith("<START_Q>") and df["prompt"][0].endswith("<START_A>")
    assert df["generation_error"].null_count() == 50 and df.schema["extracted"] == pl.String


def gsm8k_answers(snapshot) -> dict[str, str]:
    return {r["prompt"]: r["target"] for r in snapshot.read("test").head(50).to_dicts()}


def test_evaluate_endpoint_writes_both_files(gsm8k_snapshot, tmp_path):
    answers = gsm8k_answers(gsm8k_snapshot)
    questions = list(answers)

    def respond(body):
        q = body["messages"][-1]["content"].rsplit("Question: ", 1)[1].removesuffix("\nAnswer:")
        i = questions.index(q)
        # right on even items, a wrong number on odd ones, no '####' on every fifth
        return answers[q] if i % 2 == 0 else ("I think it is 3." if i % 5 == 0 else "#### -1")

    out = tmp_path / "api"
    with FakeOpenAI(respond, faults=[Fault.rate_limit(0.01), Fault.server_error()]) as server:
        res = invoke("gsm8k", "--endpoint", server.url, "--api-model", "gpt-fake", "--limit", "50",
                     "--snapshot", str(gsm8k_snapshot.path), "--out-dir", str(out), "--json")
        assert res.exit_code == 0, res.output
        assert server.request_count == 52  # 50 items + 2 retried faults
        body = server.requests[-1]
        assert body["model"] == "gpt-fake" and body["temperature"] == 0.0
        assert "#### <number>" in body["messages"][0]["content"]  # the task's instruction as the system message
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == 0.5 and metrics["n"] == 50 and metrics["reference_loss"] is None
    assert metrics["format_validity"] == pytest.approx(45 / 50) and metrics["generation_errors"] == 0
    df = pl.read_parquet(out / "predictions.parquet")
    assert PRED_COLUMNS <= set(df.columns) and df.height == 50
    words = [len(a.split()) for a in answers.values()]
    expected = sum(w if i % 2 == 0 else (5 if i % 5 == 0 else 2) for i, w in enumerate(words)) / 50
    assert metrics["mean_output_tokens"] == pytest.approx(expected)  # from the endpoint's usage


def test_k_shot_natural_prompts(gsm8k_snapshot, tmp_path):
    task = get_task("gsm8k")
    train = gsm8k_snapshot.read("train").head(200).to_dicts()
    shots = pick_shots(train, 2, seed=3)
    assert shots == pick_shots(train, 2, seed=3) and len({s["id"] for s in shots}) == 2
    rec = gsm8k_snapshot.read("test").row(0, named=True)
    p = build_prompt(task, rec, style="natural", shots=shots)
    assert "<START_Q>" not in p.text and p.text.count("Question: ") == 3 and p.text.endswith("\nAnswer:")
    assert f"Answer: {shots[0]['target']}" in p.user and p.continuation == " " + rec["target"]
    assert p.stop_strings == ["\nQuestion:"]
    with FakeOpenAI("#### 1") as server:
        metrics = evaluate_model("gsm8k", gsm8k_snapshot, endpoint=server.url, api_model="m", limit=3, shots=2)
        assert server.requests[0]["messages"][1]["content"].count("Question: ") == 3
        assert server.requests[0]["stop"] == ["\nQuestion:"]
    assert metrics["shots"] == 2 and len(metrics["shot_ids"]) == 2 and metrics["n"] == 3
    assert "out_dir" not in metrics  # nothing written without out_dir


def test_failed_generations_are_counted_then_the_run_fails(gsm8k_snapshot, tmp_path):
    records = gsm8k_snapshot.read("test").head(10)  # a DataFrame works as well as a snapshot
    with FakeOpenAI("#### 5", faults=lambda n, body: Fault.server_error() if n % 2 else None) as server:
        with pytest.raises(EvaluationError, match=r"generations failed \(server_error x\d+\)"):
            evaluate_model("gsm8k", records, endpoint=server.url, api_model="m", concurrency=1, max_retries=1,
                           out_dir=tmp_path / "bad")
    df = pl.read_parquet(tmp_path / "bad" / "predictions.parquet")  # written before failing
    assert df.height == 10 and df["generation_error"].drop_nulls().len() == 5
    assert not df.filter(pl.col("generation_error").is_not_null())["correct"].any()
    m = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert m["generation_errors"] == 5 and m["generation_error_kinds"] == {"server_error": 5}


def test_bad_arguments_are_user_errors(gsm8k_snapshot, tmp_path):
    from augscale.errors import AugscaleError

    snap = str(gsm8k_snapshot.path)
    with pytest.raises(AugscaleError, match="exactly one of --model"):
        invoke("gsm8k", "--snapshot", snap)
    with pytest.raises(AugscaleError, match="needs --api-model"):
        invoke("gsm8k", "--endpoint", "http://127.0.0.1:1/v1", "--snapshot", snap)
    with pytest.raises(AugscaleError, match="holds task 'gsm8k', not 'viggo'"):
        invoke("viggo", "--model", "x", "--snapshot", snap)
    with pytest.raises(AugscaleError, match="--dtype 'fp8': allowed values"):
        invoke("gsm8k", "--model", "x", "--dtype", "fp8", "--snapshot", snap)
    with pytest.raises(AugscaleError, match="--shots 2 uses natural-language prompts"):
        invoke("gsm8k", "--model", "x", "--shots", "2", "--prompt-style", "tokens", "--snapshot", snap)


def test_token_style_endpoint_uses_text_completions(gsm8k_snapshot):
    """Our own checkpoint behind an OpenAI-compatible server (e.g. vLLM): the raw special-token prompt."""
    with FakeOpenAI("so #### 18") as server:
        metrics = evaluate_model("gsm8k", gsm8k_snapshot, endpoint=server.url, api_model="ours", limit=2,
                                 prompt_style="tokens")
        body = server.requests[0]
        assert body["prompt"].startswith("<START_Q>") and body["prompt"].endswith("<START_A>")
        assert body["stop"] == ["<END_A>"] and "messages" not in body
    assert metrics["accuracy"] == 0.5  # the first test answer is 18


@pytest.mark.parametrize("name", ["viggo", "sql"])
def test_every_task_through_an_endpoint(name, data_dir, cache_dir):
    """Natural prompts carry each task's input (sql: the CREATE TABLE context); answers are cut and scored."""
    from augscale.datasets_cache import prepare

    snap, _ = prepare(get_task(name), data_dir=data_dir, cache_dir=cache_dir)
    test = snap.read("test").head(6).to_dicts()
    by_input = {get_task(name).input_text(r): r["target"] for r in test}

    def respond(body):
        q = body["messages"][-1]["content"].rsplit("Question: ", 1)[1].removesuffix("\nAnswer:")
        ref = by_input[q]
        return f"```sql\n{ref}\n```" if name == "sql" else ref + " trailing words"

    with FakeOpenAI(respond) as server:
        m = evaluate_model(name, snap, endpoint=server.url, api_model="m", limit=6)
    assert m["accuracy"] == 1.0 and m["format_validity"] == 1.0 and m["n"] == 6
    assert ("exact_match" in m) and (name != "sql" or "degenerate_references" in m)


def test_eval_settings_unpack_into_evaluate_model():
    import inspect

    from augscale.config import ConfigError, EvalSettings, validate_config

    params = inspect.signature(evaluate_model).parameters
    settings = validate_config(EvalSettings, {"limit": 50, "shots": 3, "dtype": "bfloat16"}, "eval")
    assert set(settings.kwargs()) <= set(params) and settings.kwargs()["limit"] == 50
    with pytest.raises(ConfigError, match="dtype"):
        validate_config(EvalSettings, {"dtype": "fp8"}, "eval")
