"""A local OpenAI-compatible HTTP server for tests and benchmarks (the one test double: an LLM API).

It answers ``POST /v1/chat/completions`` (and ``/v1/completions``, ``GET /v1/models``) on
127.0.0.1 with scripted replies, in a background thread::

    with FakeOpenAI(["#### 5", "#### 7"], latency=0.01) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")
        ...
        assert server.request_count == 2

Replies (``responder``):
    - a string: every request gets it;
    - a list: the i-th request gets the i-th item (then the last one repeats);
    - a callable ``f(request_body: dict) -> str | Reply | Fault``: computed per request;
    - None: echo the last user message.

Faults, to exercise clients' retry paths (see :class:`Fault`): a ``429`` with ``Retry-After``,
a ``500``, a reply that comes after the client's time-out, a body that is not JSON, a 200
without ``choices``. ``faults=[...]`` injects them into the first requests, in order; a
callable ``faults(n, body)`` decides per request (``n`` counts from 1). A responder may also
return a Fault. Responses carry ``usage`` (whitespace-token counts) so token accounting can
be tested; ``max_in_flight`` records the highest number of concurrent requests seen.

Reused by tests (``fake_openai`` fixture) and benchmarks; ``python tests/fake_openai.py
--reply '#### 5' --latency 0.05`` runs one in the foreground and prints its URL.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union

try:  # the fixture is for pytest; benchmarks import the server without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None


@dataclass
class Reply:
    """A scripted answer; ``usage`` overrides the counted tokens (``{"prompt_tokens": 3, ...}``)."""

    text: str
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None


@dataclass
class Fault:
    """A failure to inject. Build with the class methods.

    kind: ``status`` (HTTP error with a JSON error body, optional Retry-After header),
    ``slow`` (sleep ``seconds`` then answer normally: a client time-out when its limit is lower),
    ``malformed`` (200 with a body that is not JSON), ``no_choices`` (200, valid JSON, no choices).
    """

    kind: str
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    message: str = ""

    @classmethod
    def rate_limit(cls, retry_after: float | None = 0.05) -> "Fault":
        return cls("status", 429, retry_after=retry_after, message="Rate limit reached")

    @classmethod
    def server_error(cls, status: int = 500) -> "Fault":
        return cls("status", status, message="Internal server error")

    @classmethod
    def error(cls, status: int, message: str = "error") -> "Fault":
        """Any HTTP error status (400 bad request, 401 unauthorized, 404 unknown model...)."""
        return cls("status", status, message=message)

    @classmethod
    def timeout(cls, seconds: float = 2.0) -> "Fault":
        return cls("slow", seconds=seconds)

    @classmethod
    def malformed(cls) -> "Fault":
        return cls("malformed")

    @classmethod
    def no_choices(cls) -> "Fault":
        return cls("no_choices")


Responder = Union[str, list, Callable[[dict], Union[str, Reply, Fault]], None]
FaultPlan = Union[list, Callable[[int, dict], Union[Fault, None]], None]


def count_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words (a stand-in for a real tokenizer)."""
    return len(text.split())


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        parts = []
        for m in body["messages"]:
            c = m.get("content")
            parts.append(c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or []))
        return "\n".join(parts)
    p = body.get("prompt", "")
    return p if isinstance(p, str) else "\n".join(p)


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 in a daemon thread (see the module docstring).

    Args:
        responder: what to answer (string, list, callable or None for echo).
        latency: seconds to wait before each answer: a number, a (low, high) range, or a callable(body).
        faults: faults for the first requests in order, or a callable(n, body) -> Fault | None.
        port: 0 picks a free port.
    """

    responder: Responder = None
    latency: float | tuple[float, float] | Callable[[dict], float] = 0.0
    faults: FaultPlan = None
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    max_in_flight: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # ----- lifecycle ----------------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without this every answer waits ~40 ms for the client's delayed ACK (Nagle).
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request"}})
                    return
                route = self.path.rstrip("/")
                if not (route.endswith("/chat/completions") or route.endswith("/completions")):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                server._handle(self, body, chat=route.endswith("/chat/completions"))

            def _send(self, status: int, obj: Any = None, raw: bytes | None = None, headers: dict | None = None):
                data = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self, responder: Responder = None, faults: FaultPlan = None) -> None:
        """Forget past requests and set new replies and faults."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0
            self.responder, self.faults = responder, faults

    # ----- one request --------------------------------------------------------------
    def _handle(self, handler, body: dict, chat: bool) -> None:
        with self._lock:
            self.requests.append(body)
            n = len(self.requests)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self._sleep(body)
            fault = self._fault_for(n, body)
            if fault is None:
                replies = [self._reply(n, body) for _ in range(int(body.get("n") or 1))]
                fault = next((r for r in replies if isinstance(r, Fault)), None)
            if fault is not None:
                self._send_fault(handler, fault, body, chat)
            else:
                handler._send(200, self._completion(body, replies, chat))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _sleep(self, body: dict) -> None:
        lat = self.latency
        seconds = lat(body) if callable(lat) else random.uniform(*lat) if isinstance(lat, tuple) else lat
        if seconds:
            time.sleep(seconds)

    def _fault_for(self, n: int, body: dict) -> Fault | None:
        if callable(self.faults):
            return self.faults(n, body)
        if self.faults and n <= len(self.faults):
            return self.faults[n - 1]
        return None

    def _reply(self, n: int, body: dict) -> Reply | Fault:
        r = self.responder
        if r is None:
            msgs = body.get("messages") or [{"content": body.get("prompt", "")}]
            out: Any = msgs[-1].get("content", "")
        elif isinstance(r, str):
            out = r
        elif isinstance(r, list):
            out = r[min(n, len(r)) - 1]
        else:
            out = r(body)
        return Reply(out) if isinstance(out, str) else out

    def _send_fault(self, handler, fault: Fault, body: dict, chat: bool) -> None:
        if fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            err = {"error": {"message": fault.message, "type": "fake_error", "code": str(fault.status)}}
            handler._send(fault.status, err, headers=headers)
        elif fault.kind == "slow":
            time.sleep(fault.seconds)
            handler._send(200, self._completion(body, [self._reply(0, body)], chat))
        elif fault.kind == "malformed":
            handler._send(200, raw=b'{"id": "chatcmpl-broken", "choices": [{"mess')
        elif fault.kind == "no_choices":
            handler._send(200, {"id": "chatcmpl-empty", "object": "chat.completion", "created": int(time.time()),
                                "model": body.get("model", "fake-model")})
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _completion(self, body: dict, replies: list, chat: bool) -> dict:
        choices, completion_tokens = [], 0
        for i, rep in enumerate(replies):
            if isinstance(rep, Fault):  # a slow fault's late answer: reply with an empty text
                rep = Reply("")
            text, finish = _apply_limits(rep.text, rep.finish_reason, body)
            completion_tokens += (rep.usage or {}).get("completion_tokens", count_tokens(text))
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": finish, "logprobs": None})
            else:
                choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
        first = replies[0] if isinstance(replies[0], Reply) else Reply("")
        prompt_tokens = (first.usage or {}).get("prompt_tokens", count_tokens(_prompt_text(body)))
        return {
            "id": f"chatcmpl-fake{next(self._ids)}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model", "fake-model"), "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _apply_limits(text: str, finish: str, body: dict) -> tuple[str, str]:
    """Cut at the first stop sequence (not included, as OpenAI does) and at ``max_tokens`` words."""
    stop = body.get("stop")
    for s in [stop] if isinstance(stop, str) else stop or []:
        if s and s in text:
            text, finish = text.split(s, 1)[0], "stop"
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    words = text.split(" ")
    if limit and count_tokens(text) > limit:
        text, finish = " ".join(words[:limit]), "length"
    return text, finish


def _fake_openai_fixture():
    """A started :class:`FakeOpenAI` (echo replies until ``server.reset(...)``); stopped after the test."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


if pytest is not None:
    fake_openai = pytest.fixture(_fake_openai_fixture, name="fake_openai")


def main() -> None:
    ap = argparse.ArgumentParser(description="Run a fake OpenAI-compatible server in the foreground.")
    ap.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    ap.add_argument("--reply", default=None, help="answer every request with this text (default: echo)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = ap.parse_args()
    server = FakeOpenAI(args.reply, latency=args.latency, port=args.port).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
