"""OpenAI-compatible endpoints (OpenAI, vLLM, Ollama, ...) through the ``openai`` client.

Three layers, each usable alone:

- :class:`ChatClient`: one chat request with retries (``tenacity``: 429 honouring
  ``Retry-After``, 5xx, time-outs, connection errors, malformed responses; the ``openai``
  client's own retries are off, so that each try is counted and a limiter can hold each one).
  A request that still fails comes back as a :class:`ChatResult` with ``error`` set: a counted
  failure, never an exception. Only errors no retry can fix (401/403 bad key, 404 unknown model
  or URL) raise :class:`EndpointError`, at once, because every later request would fail the same way.
  :meth:`ChatClient.complete` is the same for text completions (a raw prompt, no chat template).
- :func:`chat_many`: many requests with a bounded number in flight, results in input order.
- :class:`EndpointGenerator`: a Ray Data callable class with the columns of
  :mod:`augscale.llm.batch`, for pipelines; also callable on a plain dict of lists.

Rate limits and budgets (augmentation) are meant to wrap :class:`ChatClient`, not replace it.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from augscale.errors import AugscaleError
from augscale.llm.batch import column, expand, failed_sample

Messages = list[dict[str, str]]


class EndpointError(AugscaleError, RuntimeError):
    """The endpoint refuses every request (bad key, unknown model, wrong URL): fix the settings."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter; a server's ``Retry-After`` wins when it is given.

    Args:
        max_attempts: tries per request, the first included.
        initial_backoff: seconds before the second try; doubles (``multiplier``) each time.
        max_backoff: the longest wait, ``Retry-After`` included.
        jitter: a random share added to each wait, so that concurrent retries spread out.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff)
        return base * (1 + self.jitter * random.random())


class _WaitRetryAfter(wait_base):
    """tenacity wait: the policy's delay after the failed try, the server's ``Retry-After`` first."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def __call__(self, retry_state) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        return self.policy.delay(retry_state.attempt_number, getattr(failure, "retry_after", None))


class _Failure(Exception):
    """One failed try: its kind (``rate_limited``, ``server_error``, ...), whether a retry may
    help, and the wait the server asked for."""

    def __init__(self, kind: str, detail: str, retryable: bool, retry_after: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.retryable, self.retry_after = retryable, retry_after


@dataclass
class ChatResult:
    """One request's outcome. ``texts`` holds one text per sample (``n``); empty on failure.

    ``error`` is None or ``"<kind>: <detail>"`` with kind one of ``rate_limited``,
    ``server_error``, ``timeout``, ``connection``, ``malformed_response``, ``bad_request``.
    """

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def classify_error(exc: Exception) -> tuple[str, bool, float | None]:
    """An exception from the openai client -> (error kind, retryable, Retry-After seconds).

    Raises:
        EndpointError: 401, 403 and 404 (retrying cannot help; the settings must change).
    """
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
        raise EndpointError(
            f"the endpoint refused the request ({exc.status_code}: {_message(exc)}). Check the URL "
            "(--endpoint, ending in /v1), the model name (--api-model) and the API key "
            "(the variable --api-key-env names, OPENAI_API_KEY by default)."
        ) from exc
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", True, parse_retry_after(exc.response.headers)
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(exc, openai.APIStatusError):
        retry = exc.status_code >= 500 or exc.status_code in (408, 409)
        kind = "server_error" if exc.status_code >= 500 else "bad_request"
        return kind, retry, parse_retry_after(exc.response.headers)
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return "malformed_response", True, None
    raise exc


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error", {}).get("message") or body)[:200]
    return str(exc)[:200]


class ChatClient:
    """Chat completions against one OpenAI-compatible endpoint, with retries.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1`` (vLLM).
        api_key: the key; default: the environment variable ``api_key_env``, else ``"EMPTY"``
            (local servers accept any key).
        timeout: seconds per try.
        retry: the back-off policy.
        sleep: how to wait between tries (tests and rate limiters may replace it).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url
        self.retry = retry
        self.sleep = sleep
        key = api_key or os.environ.get(api_key_env) or "EMPTY"
        # The client's own retries are off: ours count attempts and report failures as data.
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)

    def chat(self, messages: Messages, *, model: str, max_tokens: int = 256, temperature: float = 0.0,
             n: int = 1, stop: Sequence[str] | None = None, **extra: Any) -> ChatResult:
        """Send one chat-completions request, retrying what can be retried.

        Returns:
            A ChatResult; on failure after all tries, ``error`` says why and ``texts`` is empty.

        Raises:
            EndpointError: the endpoint refuses the settings (401/403/404).
        """
        def call():
            resp = self.client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, n=n,
                stop=list(stop) if stop else None, **extra)
            return resp, [c.message.content or "" for c in resp.choices or []]

        return self._with_retries(call)

    def complete(self, prompt: str, *, model: str, max_tokens: int = 256, temperature: float = 0.0,
                 n: int = 1, stop: Sequence[str] | None = None, **extra: Any) -> ChatResult:
        """Send one text-completions request (raw prompt, no chat template): e.g. our own
        checkpoints served by vLLM with the special-token prompt. Retries as :meth:`chat`.

        Raises:
            EndpointError: the endpoint refuses the settings (401/403/404).
        """
        def call():
            resp = self.client.completions.create(
                model=model, prompt=prompt, max_tokens=max_tokens, temperature=temperature, n=n,
                stop=list(stop) if stop else None, **extra)
            return resp, [c.text or "" for c in resp.choices or []]

        return self._with_retries(call)

    def _with_retries(self, call: Callable[[], tuple[Any, list[str]]]) -> ChatResult:
        start = time.monotonic()

        def one_try() -> tuple[Any, list[str]]:
            try:
                resp, texts = call()
            except (openai.OpenAIError, ValueError) as e:  # ValueError: a body that is not JSON
                kind, retryable, retry_after = classify_error(e)  # 401/403/404 raise EndpointError
                raise _Failure(kind, _message(e), retryable, retry_after) from e
            if not texts:
                raise _Failure("malformed_response", "response has no choices", True)
            return resp, texts

        retrying = Retrying(stop=stop_after_attempt(self.retry.max_attempts), wait=_WaitRetryAfter(self.retry),
                            retry=retry_if_exception(lambda e: isinstance(e, _Failure) and e.retryable),
                            sleep=self.sleep, reraise=True)
        try:
            resp, texts = retrying(one_try)
        except _Failure as failure:
            n = retrying.statistics.get("attempt_number", 1)
            return ChatResult(attempts=n, seconds=time.monotonic() - start,
                              error=f"{failure} (after {n} attempt{'s' if n > 1 else ''})")
        usage = resp.usage
        return ChatResult(texts=texts, finish_reasons=[c.finish_reason or "stop" for c in resp.choices],
                          prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                          attempts=retrying.statistics.get("attempt_number", 1), seconds=time.monotonic() - start)


def chat_many(client: ChatClient, requests: Sequence[Messages | str], *, concurrency: int = 8,
              on_result: Callable[[int, ChatResult], None] | None = None, **params: Any) -> list[ChatResult]:
    """Send many requests, at most ``concurrency`` in flight; results in input order.

    A request is a list of chat messages (chat completions) or a string (text completions).
    ``params`` go to :meth:`ChatClient.chat` / :meth:`ChatClient.complete` (``model``,
    ``max_tokens``, ...). ``on_result(i, r)`` is called as each finishes (progress, budgets).

    Raises:
        EndpointError: the endpoint refuses the settings; the remaining requests are cancelled.
    """
    results: list[ChatResult | None] = [None] * len(requests)
    lock = threading.Lock()

    def one(i: int) -> None:
        req = requests[i]
        r = client.complete(req, **params) if isinstance(req, str) else client.chat(req, **params)
        results[i] = r
        if on_result is not None:
            with lock:
                on_result(i, r)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(one, i) for i in range(len(requests))]
        try:
            for f in futures:
                f.result()
        except EndpointError:
            for f in futures:
                f.cancel()
            raise
    return results  # type: ignore[return-value]


def to_messages(prompt: str, system: str | None = None) -> Messages:
    """A user prompt (and an optional system instruction) as chat messages."""
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


class EndpointGenerator:
    """Ray Data step: generate for the ``prompt_col`` column with an OpenAI-compatible endpoint.

    ``__init__`` opens the client; ``__call__(batch)`` sends the batch's requests concurrently and
    returns the batch with the columns of :mod:`augscale.llm.batch` (``num_samples`` rows per
    prompt). Example output row::

        {"id": "gsm8k-test-00001", "prompt": "...", "sample_index": 0, "prediction": "... #### 18",
         "output_tokens": 41, "prompt_tokens": 120, "finish_reason": "stop", "error": None}

    Args:
        base_url, model: the endpoint and the model name it serves.
        system: an instruction sent as the system message of every request (chat only).
        api: ``chat`` (chat completions) or ``completions`` (the raw prompt, no chat template).
        max_tokens, temperature, num_samples, stop: generation settings (``n`` = num_samples).
        concurrency: requests in flight per batch (per actor).
        api_key, api_key_env, timeout, retry: see :class:`ChatClient`.
    """

    def __init__(self, base_url: str, model: str, *, system: str | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, num_samples: int = 1, stop: Sequence[str] = (), concurrency: int = 8,
                 api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retry: RetryPolicy | dict | None = None, prompt_col: str = "prompt", api: str = "chat"):
        if api not in ("chat", "completions"):
            raise ValueError(f"api {api!r}: allowed values are chat, completions")
        if isinstance(retry, dict):
            retry = RetryPolicy(**retry)
        self.client = ChatClient(base_url, api_key=api_key, api_key_env=api_key_env, timeout=timeout,
                                 retry=retry or RetryPolicy())
        self.model, self.system, self.prompt_col, self.api = model, system, prompt_col, api
        self.params = {"max_tokens": max_tokens, "temperature": temperature, "n": num_samples,
                       "stop": list(stop) or None}
        self.num_samples, self.concurrency = num_samples, concurrency

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        prompts = column(batch, self.prompt_col)
        requests = prompts if self.api == "completions" else [to_messages(p, self.system) for p in prompts]
        results = chat_many(self.client, requests, concurrency=self.concurrency, model=self.model, **self.params)
        return expand(batch, [self._samples(r) for r in results])

    def _samples(self, r: ChatResult) -> list[dict[str, Any]]:
        if not r.ok:
            return [failed_sample(r.error or "error", r.prompt_tokens, i) for i in range(self.num_samples)]
        k = len(r.texts)
        # usage is per request: split the completion tokens over its samples (exact when n == 1)
        per = [r.completion_tokens // k + (1 if i < r.completion_tokens % k else 0) for i in range(k)]
        return [{"sample_index": i, "prediction": t, "output_tokens": per[i], "prompt_tokens": r.prompt_tokens,
                 "finish_reason": r.finish_reasons[i], "error": None} for i, t in enumerate(r.texts)]
