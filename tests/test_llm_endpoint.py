"""The OpenAI-compatible engine against the local fake server: retries, faults as data, concurrency, usage."""

from __future__ import annotations

import threading

import pytest
from fake_openai import Fault, FakeOpenAI, Reply

from augscale.llm.endpoint import (
    ChatClient, EndpointError, EndpointGenerator, RetryPolicy, chat_many, parse_retry_after, to_messages,
)

MSG = to_messages("What is 2+2?", system="Answer briefly.")


@pytest.fixture
def fake():
    """A fake server per test (echo replies until ``fake.reset(...)``)."""
    with FakeOpenAI() as server:
        yield server


def client(server, sleeps=None, **kw) -> ChatClient:
    """A client whose waits are recorded instead of slept (the fake's Retry-After is honoured)."""
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return ChatClient(server.url, api_key="test", sleep=record, **kw)


def test_answer_usage_and_messages(fake):
    fake.reset("four")
    r = client(fake).chat(MSG, model="fake", max_tokens=5)
    assert r.ok and r.texts == ["four"] and r.attempts == 1
    assert r.completion_tokens == 1 and r.prompt_tokens == 5  # the fake counts words
    body = fake.requests[0]
    assert body["model"] == "fake" and body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert body["temperature"] == 0.0 and body["max_tokens"] == 5


def test_rate_limit_retry_after_then_success(fake):
    fake.reset("ok", faults=[Fault.rate_limit(retry_after=1.5), Fault.rate_limit(retry_after=0.25)])
    sleeps: list[float] = []
    r = client(fake, sleeps).chat(MSG, model="fake")
    assert r.ok and r.texts == ["ok"] and r.attempts == 3
    assert sleeps == [1.5, 0.25]  # the server's Retry-After, not our back-off
    assert fake.request_count == 3


@pytest.mark.parametrize("fault, kind", [
    (Fault.server_error(500), "server_error"),
    (Fault.server_error(503), "server_error"),
    (Fault.malformed(), "malformed_response"),
    (Fault.no_choices(), "malformed_response"),
])
def test_transient_faults_are_retried(fake, fault, kind):
    fake.reset("ok", faults=[fault])
    sleeps: list[float] = []
    r = client(fake, sleeps).chat(MSG, model="fake")
    assert r.ok and r.attempts == 2 and len(sleeps) == 1 and 0.5 <= sleeps[0] <= 0.55  # back-off with jitter
    fake.reset("ok", faults=lambda n, body: fault)  # fails every time
    r = client(fake, retry=RetryPolicy(max_attempts=3)).chat(MSG, model="fake")
    assert not r.ok and r.texts == [] and r.attempts == 3
    assert r.error.startswith(f"{kind}:") and r.error.endswith("(after 3 attempts)")


def test_timeout_is_retried(fake):
    fake.reset("late but fine", faults=[Fault.timeout(seconds=1.0)])
    r = client(fake, timeout=0.2).chat(MSG, model="fake")
    assert r.ok and r.texts == ["late but fine"] and r.attempts == 2


def test_bad_request_is_not_retried_and_bad_settings_raise(fake):
    fake.reset("ok", faults=[Fault.error(400, "prompt too long")])
    r = client(fake).chat(MSG, model="fake")
    assert not r.ok and r.attempts == 1 and r.error.startswith("bad_request: ") and "prompt too long" in r.error
    for status in (401, 403, 404):
        fake.reset("ok", faults=[Fault.error(status, "nope")])
        with pytest.raises(EndpointError, match=rf"refused the request \({status}: nope\).*--api-model"):
            client(fake).chat(MSG, model="fake")
        assert fake.request_count == 1  # not retried


def test_back_off_policy():
    p = RetryPolicy(initial_backoff=1.0, multiplier=2.0, max_backoff=5.0, jitter=0.0)
    assert [p.delay(a) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert p.delay(1, retry_after=30) == 5.0 and p.delay(3, retry_after=0.1) == 0.1
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None


def test_chat_many_concurrency_order_and_progress():
    def answer(body):
        return "re: " + body["messages"][-1]["content"]

    with FakeOpenAI(answer, latency=0.1) as server:
        seen = []
        reqs = [to_messages(f"q{i}") for i in range(12)]
        out = chat_many(client(server), reqs, concurrency=6, model="fake", on_result=lambda i, r: seen.append(i))
        assert [r.texts[0] for r in out] == [f"re: q{i}" for i in range(12)]  # input order
        assert sorted(seen) == list(range(12))
        assert server.max_in_flight > 1  # requests overlapped
        assert server.max_in_flight <= 6


def test_chat_many_stops_on_bad_settings(fake):
    fake.reset("ok", faults=lambda n, body: Fault.error(401, "bad key"))
    with pytest.raises(EndpointError):
        chat_many(client(fake), [MSG] * 20, concurrency=2, model="fake")
    assert fake.request_count < 20


def test_endpoint_generator_rows_samples_and_failures(fake):
    lock = threading.Lock()
    calls = {"n": 0}

    def answer(body):
        with lock:
            calls["n"] += 1
            k = calls["n"]
        if "fail" in body["messages"][-1]["content"]:
            return Fault.server_error()
        return Reply(f"answer {k} to {body['messages'][-1]['content']}")

    fake.reset(answer)
    gen = EndpointGenerator(fake.url, "fake", system="Be brief.", num_samples=2, temperature=0.7,
                            max_tokens=20, concurrency=2, retry={"max_attempts": 2, "initial_backoff": 0.01})
    out = gen({"id": ["a", "b", "c"], "prompt": ["first", "please fail", "third"]})
    assert list(out["id"]) == ["a", "a", "b", "b", "c", "c"] and list(out["sample_index"]) == [0, 1, 0, 1, 0, 1]
    assert out["prediction"][0] != out["prediction"][1] and "to first" in out["prediction"][0]
    assert out["error"][0] is None and out["finish_reason"][0] == "stop"
    assert out["error"][2].startswith("server_error") and out["prediction"][2] == ""
    assert out["finish_reason"][2] == "error"
    assert out["output_tokens"][0] + out["output_tokens"][1] == 8  # usage split over the request's two samples
    body = next(b for b in fake.requests if "first" in b["messages"][-1]["content"])
    assert body["n"] == 2 and body["temperature"] == 0.7 and body["max_tokens"] == 20


def test_stop_sequences_and_length(fake):
    fake.reset("one two three\nQuestion: next")
    r = client(fake).chat(MSG, model="fake", stop=["\nQuestion:"])
    assert r.texts == ["one two three"] and r.finish_reasons == ["stop"]
    r = client(fake).chat(MSG, model="fake", max_tokens=2)
    assert r.texts == ["one two"] and r.finish_reasons == ["length"] and r.completion_tokens == 2


def test_text_completions_with_retries(fake):
    fake.reset(lambda body: "SELECT 1 " + body["prompt"][-5:], faults=[Fault.server_error()])
    r = client(fake).complete("<START_Q>q<END_Q><START_A>", model="ours", stop=["<END_A>"], max_tokens=8)
    assert r.ok and r.texts == ["SELECT 1 RT_A>"] and r.attempts == 2
    assert fake.requests[-1]["prompt"] == "<START_Q>q<END_Q><START_A>"
    gen = EndpointGenerator(fake.url, "ours", api="completions")
    out = gen({"prompt": ["abcdef"]})
    assert list(out["prediction"]) == ["SELECT 1 bcdef"] and "messages" not in fake.requests[-1]
    with pytest.raises(ValueError, match="allowed values are chat, completions"):
        EndpointGenerator(fake.url, "ours", api="responses")
