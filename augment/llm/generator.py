"""The OpenAI-compatible generator that LLM strategies use inside Ray Data actors.

:class:`LLMGenerator` wraps :class:`augscale.llm.endpoint.ChatClient` (one chat request, retried
on 429 honouring ``Retry-After``, 5xx, time-outs and malformed bodies, with exponential back-off
and jitter; failures come back as data) and adds what a long augmentation run needs:

- ``concurrency`` requests in flight (a thread pool: the ``openai`` client is blocking and
  thread-safe, and requests spend their time waiting on the network, not the GIL);
- requests/min and tokens/min limits (token buckets; tokens are estimated before a request as
  ``len(prompt) / 4 + max_tokens * n`` and corrected with the usage the server reports). The
  limits are for the whole run: each of the pipeline's actors enforces ``limit_share`` of them.
  A retry is a request: it waits for the request limit after its back-off;
- token usage summed, and cost from configured prices (USD per million input/output tokens);
- a budget (``budget_tokens``, ``budget_usd``) at two levels: the driver stops launching blocks
  once the usage of finished blocks reaches it (:func:`budget_reason`), and each actor, given
  its share of what the blocks on disk left of it, sends no new request once it has spent that
  share (the strategy rejects the remaining attempts with ``budget_exhausted``; the pipeline does
  not persist such a block and marks the snapshot ``stopped``, so a later run with a larger
  budget goes on from the blocks on disk and replaces the partial snapshot);
- a bound on the share of requests that fail after every retry: past it the run stops with an
  error instead of producing a snapshot made of rejections.

The API key is read in the actor from the environment variable named ``api_key_env``; only the
name travels in configs, kwargs and manifests. Error texts are scrubbed of the key's value.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from augscale.errors import AugscaleError
from augscale.llm.endpoint import ChatClient, ChatResult, EndpointError, Messages, RetryPolicy

T = TypeVar("T")
R = TypeVar("R")

BUDGET_EXHAUSTED = "budget_exhausted"
USAGE_KEYS = ("requests", "failed_requests", "attempts", "prompt_tokens", "completion_tokens", "tokens",
              "cost_usd", "skipped_for_budget")


# The usage of the current :meth:`LLMGenerator.map_counted` call (one block), next to the total:
# blocks may run at once in one actor, so "spent during the call" is not "total after - before".
_LEDGER: contextvars.ContextVar["_Usage | None"] = contextvars.ContextVar("augscale_llm_ledger", default=None)


class GeneratorError(AugscaleError, RuntimeError):
    """The endpoint fails too often for the run to be worth finishing (or cannot be used at all)."""


class TokenBucket:
    """A thread-safe token bucket: ``rate`` units per second, at most ``capacity`` stored.

    :meth:`acquire` blocks until the bucket holds ``amount`` (or is full, for an amount larger
    than the capacity) and then takes it, possibly leaving a debt that later callers wait off.
    """

    def __init__(self, rate: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, capacity if capacity is not None else rate)
        self.level = self.capacity
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount`` units, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return waited
                wait = (need - self.level) / self.rate
            self._sleep(wait)
            waited += wait

    def give_back(self, amount: float) -> None:
        """Return units taken in excess (an estimate above the real usage), or take more (negative)."""
        with self._lock:
            self._refill()
            self.level = min(self.capacity, self.level + amount)


def cost_usd(prompt_tokens: int, completion_tokens: int, price_input_per_mtok: float,
             price_output_per_mtok: float) -> float:
    """USD for the tokens at prices given per million input and output tokens."""
    return (prompt_tokens * price_input_per_mtok + completion_tokens * price_output_per_mtok) / 1e6


def budget_reason(usage: dict[str, float], budget_tokens: int | None = None,
                  budget_usd: float | None = None) -> str | None:
    """Why the budget is spent given summed usage (``tokens``, ``cost_usd``), or None."""
    if budget_tokens is not None and usage.get("tokens", 0) >= budget_tokens:
        return f"token budget spent: {int(usage.get('tokens', 0)):,} of {budget_tokens:,} tokens"
    if budget_usd is not None and usage.get("cost_usd", 0.0) >= budget_usd:
        return f"cost budget spent: ${usage.get('cost_usd', 0.0):.4f} of ${budget_usd:.4f}"
    return None


@dataclass
class _Usage:
    requests: int = 0
    failed_requests: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    skipped_for_budget: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"requests": self.requests, "failed_requests": self.failed_requests, "attempts": self.attempts,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.prompt_tokens + self.completion_tokens, "cost_usd": round(self.cost_usd, 8),
                "skipped_for_budget": self.skipped_for_budget}


class LLMGenerator:
    """Chat requests to one OpenAI-compatible endpoint, rate-limited, budgeted and accounted.

    Built once per Ray Data actor (in a strategy's ``__init__``). :meth:`chat` is thread-safe;
    :meth:`map` runs a function over items on ``concurrency`` threads, so that a strategy can
    chain its requests per seed (rephrase, then answer) without waiting for the whole block.

    Args:
        base_url: the endpoint (``https://api.openai.com/v1``, ``http://host:8000/v1`` for vLLM).
        model: the model name the endpoint serves.
        api_key_env: NAME of the environment variable holding the key (unset: no key, for local servers).
        concurrency: requests in flight in this actor.
        requests_per_minute, tokens_per_minute: limits for the whole run (None: none).
        limit_share: the share of those limits this actor enforces (1 / number of actors).
        timeout_s: seconds per try of one request.
        max_attempts, initial_backoff_s, max_backoff_s, jitter: the retry policy (see RetryPolicy).
        temperature, max_tokens: defaults of each request.
        price_input_per_mtok, price_output_per_mtok: USD per million prompt / completion tokens.
        budget_tokens, budget_usd: stop sending once this actor has spent either (None: no budget).
        native_n: ask for ``n`` samples in one request (OpenAI, vLLM); False sends ``n`` requests
            (servers that ignore ``n``, e.g. Ollama).
        max_failure_rate: share of requests failing after all retries that stops the run
            (checked once ``min_requests_for_rate`` requests have finished).
        sleep: how to wait between tries (the retry policy's back-off or ``Retry-After``).
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 limit_share: float = 1.0, timeout_s: float = 60.0, max_attempts: int = 5,
                 initial_backoff_s: float = 0.5, max_backoff_s: float = 30.0, jitter: float = 0.25,
                 temperature: float = 0.7, max_tokens: int = 512, price_input_per_mtok: float = 0.0,
                 price_output_per_mtok: float = 0.0, budget_tokens: int | None = None,
                 budget_usd: float | None = None, native_n: bool = True, max_failure_rate: float = 0.5,
                 min_requests_for_rate: int = 20, sleep: Callable[[float], None] = time.sleep):
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency = max(1, int(concurrency))
        self.temperature, self.max_tokens, self.native_n = temperature, max_tokens, native_n
        self.prices = (price_input_per_mtok, price_output_per_mtok)
        self.budget_tokens, self.budget_usd = budget_tokens, budget_usd
        self.max_failure_rate, self.min_requests_for_rate = max_failure_rate, min_requests_for_rate
        retry = RetryPolicy(max_attempts=max_attempts, initial_backoff=initial_backoff_s, max_backoff=max_backoff_s,
                            jitter=jitter)
        # The key is read here, in the actor, and kept only inside the openai client.
        self._secret = os.environ.get(api_key_env) or None
        self._sleep = sleep
        self.client = ChatClient(base_url, api_key_env=api_key_env, timeout=timeout_s, retry=retry,
                                 sleep=self._backoff)
        share = max(1e-9, limit_share)
        self._rpm = TokenBucket(requests_per_minute * share / 60) if requests_per_minute else None
        # A minute's worth at most, so a burst after an idle spell stays within the limit.
        self._tpm = (TokenBucket(tokens_per_minute * share / 60, tokens_per_minute * share)
                     if tokens_per_minute else None)
        self._usage = _Usage()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:  # never the key; its variable's name is enough to find it
        return f"LLMGenerator(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # ----- one request ----------------------------------------------------------------
    def chat(self, messages: Messages, *, n: int = 1, temperature: float | None = None,
             max_tokens: int | None = None, stop: Sequence[str] | None = None, **extra: Any) -> ChatResult:
        """One chat request for ``n`` samples (``n`` requests when ``native_n`` is off).

        Returns:
            A ChatResult: ``texts`` has up to ``n`` items; ``error`` says why not (``budget_exhausted``,
            or the endpoint's failure kind after every retry), scrubbed of the API key.

        Raises:
            EndpointError: the endpoint refuses the settings (401/403/404): every request would fail.
            GeneratorError: more than ``max_failure_rate`` of the requests failed.
        """
        temperature = self.temperature if temperature is None else temperature
        max_tokens = max_tokens or self.max_tokens
        if n > 1 and not self.native_n:
            parts = [self._one(messages, 1, temperature, max_tokens, stop, extra) for _ in range(n)]
            ok = [p for p in parts if p.ok]
            merged = ChatResult(texts=[t for p in ok for t in p.texts],
                                finish_reasons=[f for p in ok for f in p.finish_reasons],
                                prompt_tokens=sum(p.prompt_tokens for p in parts),
                                completion_tokens=sum(p.completion_tokens for p in parts),
                                attempts=sum(p.attempts for p in parts), seconds=max(p.seconds for p in parts))
            if not ok:
                merged.error = parts[0].error
            return merged
        return self._one(messages, n, temperature, max_tokens, stop, extra)

    def _one(self, messages: Messages, n: int, temperature: float, max_tokens: int, stop, extra) -> ChatResult:
        spent = self.budget_spent()
        ledgers = [u for u in (self._usage, _LEDGER.get()) if u is not None]
        if spent is not None:
            with self._lock:
                for u in ledgers:
                    u.skipped_for_budget += 1
            return ChatResult(error=f"{BUDGET_EXHAUSTED}: {spent}")
        estimate = sum(len(m.get("content") or "") for m in messages) / 4 + max_tokens * n
        if self._rpm is not None:
            self._rpm.acquire(1)
        if self._tpm is not None:
            self._tpm.acquire(estimate)
        try:
            result = self.client.chat(messages, model=self.model, max_tokens=max_tokens, temperature=temperature,
                                      n=n, stop=stop, **extra)
        except EndpointError as e:  # 401/403/404: the server's message may quote the key
            raise EndpointError(self.scrub(str(e))) from None
        used = result.prompt_tokens + result.completion_tokens
        if self._tpm is not None:
            self._tpm.give_back(estimate - used)
        if result.error:
            result.error = self.scrub(result.error)
        with self._lock:
            for u in ledgers:
                u.requests += 1
                u.attempts += result.attempts
                u.prompt_tokens += result.prompt_tokens
                u.completion_tokens += result.completion_tokens
                u.cost_usd += cost_usd(result.prompt_tokens, result.completion_tokens, *self.prices)
                u.failed_requests += 0 if result.ok else 1
            if not result.ok:
                self._last_error = result.error
            failed, total = self._usage.failed_requests, self._usage.requests
        if total >= self.min_requests_for_rate and failed / total > self.max_failure_rate:
            raise GeneratorError(
                f"{failed} of {total} requests to {self.base_url} (model {self.model!r}) failed after every retry "
                f"(more than max_failure_rate={self.max_failure_rate}); last error: {self._last_error}. Check the "
                "endpoint, or lower concurrency / requests_per_minute.")
        return result

    def _backoff(self, seconds: float) -> None:
        """ChatClient's wait before a retry: the back-off, then the request limit (a retry is a request)."""
        self._sleep(seconds)
        if self._rpm is not None:
            self._rpm.acquire(1)

    def scrub(self, text: str) -> str:
        """``text`` with the API key's value replaced by ``***``."""
        return text.replace(self._secret, "***") if self._secret and len(self._secret) >= 4 else text

    # ----- many requests --------------------------------------------------------------
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` on the generator's ``concurrency`` threads, in input order.

        ``fn`` calls :meth:`chat` (once or several times, in a chain). Several calls of ``map``
        may run at once (blocks overlapping in one actor): they share the threads, so that
        one's slowest requests leave no thread idle while the other has work. The first
        exception a call raises (EndpointError, GeneratorError) is raised here after the
        others are cancelled.
        """
        return self.map_counted(fn, items)[0]

    def map_counted(self, fn: Callable[[T], R], items: Sequence[T]) -> tuple[list[R], dict[str, float]]:
        """:meth:`map`, and what its requests spent (see :data:`USAGE_KEYS`)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm")
            pool = self._pool
        ledger = _Usage()
        ctx = contextvars.copy_context()
        ctx.run(_LEDGER.set, ledger)
        futures = [pool.submit(ctx.copy().run, fn, x) for x in items]  # a context is entered by one thread
        try:
            results = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        with self._lock:
            return results, ledger.as_dict()

    # ----- accounting -----------------------------------------------------------------
    def usage(self) -> dict[str, float]:
        """Everything this generator spent so far (see :data:`USAGE_KEYS`)."""
        with self._lock:
            return self._usage.as_dict()

    def budget_spent(self) -> str | None:
        """None while within budget, else why not (the reason says what was spent)."""
        with self._lock:
            usage = self._usage.as_dict()
        return budget_reason(usage, self.budget_tokens, self.budget_usd)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self.client.client.close()
