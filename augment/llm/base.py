"""What every endpoint strategy shares: the ``generator`` section, templates, requests, usage, budget.

A subclass declares its templates (role -> default template and the fields it fills in) and
implements :meth:`LLMStrategy.one_seed`: the attempts on one seed, a chain of requests
(rephrase, then solve). The seeds of a block run on the generator's threads, each chain on its
own while the others wait on the network. :meth:`LLMStrategy.generate` is thread-safe and
accounts each call's usage on its own, so that an actor may run several blocks at once on the
same threads (then a block's slowest requests leave no thread idle).

Failed requests are rejections named after the failure: ``request_rate_limited``,
``request_server_error``, ``request_timeout``, ``request_connection``,
``request_malformed_response``, ``request_bad_request`` (after every retry), and
``budget_exhausted`` for requests the budget stopped.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

from pydantic import Field

from augscale.augment.llm.generator import BUDGET_EXHAUSTED, LLMGenerator, budget_reason
from augscale.augment.llm.prompts import Template, load_template
from augscale.augment.manifest import module_hash
from augscale.augment.strategies import Candidate, Strategy, StrategyError, StrategyParams
from augscale.llm.endpoint import ChatResult, to_messages

# generator settings that change what is generated (cache key); the others change only speed or spend.
CONTENT_KEYS = ("model", "temperature", "max_tokens", "samples_per_prompt")
# config keys that are not LLMGenerator arguments
_EDGE_KEYS = ("base_url_env", "model_env", "actors", "cpus_per_actor", "samples_per_prompt")


class LLMParams(StrategyParams):
    """Params every endpoint strategy accepts (each may add its own)."""

    samples: int | None = Field(None, ge=1, le=64, description="samples per prompt; default "
                                "generator.samples_per_prompt")
    temperature: float | None = Field(None, ge=0, le=2, description="default generator.temperature")
    max_tokens: int | None = Field(None, ge=1, description="tokens per answer; default generator.max_tokens")
    prompts: dict[str, str] = Field(default_factory=dict, description="template role -> a built-in template "
                                    "name or a file, replacing the strategy's default")


def generator_kwargs(gen: dict[str, Any], strategy: str, actors: int | None = None) -> dict[str, Any]:
    """The ``generator`` config section as plain values: endpoint and model resolved from the
    environment when not written in the config; the API key stays a variable's name. Each of
    the ``actors`` (default ``generator.actors``) enforces its share of the rate limits.

    Raises:
        StrategyError: no endpoint URL or model, in the config or in the named variables.
    """
    out = dict(gen)
    for key, env in (("base_url", out.get("base_url_env") or "OPENAI_BASE_URL"),
                     ("model", out.get("model_env") or "AUGSCALE_LLM_MODEL")):
        if not out.get(key):
            out[key] = os.environ.get(env) or None
        if not out[key]:
            raise StrategyError(f"strategy {strategy!r}: generator.{key} is not set and the environment variable "
                                f"{env} is empty. Set generator.{key} in the config, or export {env}.")
    out["actors"] = int(actors or out.get("actors") or 1)
    out["limit_share"] = 1.0 / out["actors"]
    out.setdefault("samples_per_prompt", 1)
    return out


class LLMStrategy(Strategy):
    """Base of the strategies that ask an OpenAI-compatible endpoint.

    Class attributes:
        templates: role -> (default template name, fields the strategy fills in).
        code_modules: modules besides its own whose code decides its candidates (cache key).
    """

    Params: ClassVar[type[StrategyParams]] = LLMParams
    templates: ClassVar[dict[str, tuple[str, frozenset[str]]]] = {}
    code_modules: ClassVar[tuple[str, ...]] = ()

    # ----- at the edge and on the driver ----------------------------------------------
    @classmethod
    def init_kwargs(cls, params: StrategyParams, shared: dict[str, Any]) -> dict[str, Any]:
        """Params plus ``generator`` (plain values) and ``prompts`` (role -> source, hash).

        Raises:
            StrategyError: no ``generator`` section, an unknown template role, a template that
                cannot be loaded or lacks a field.
        """
        gen = shared.get("generator")
        if not gen:
            raise StrategyError(f"strategy {cls.name!r} asks an LLM: add a `generator` section to the config "
                                "(base_url, model, api_key_env; see configs/augment/*.yaml)")
        kwargs = params.model_dump()
        unknown = set(kwargs["prompts"]) - set(cls.templates)
        if unknown:
            raise StrategyError(f"strategy {cls.name!r}: params.prompts has unknown role(s) {sorted(unknown)}; "
                                f"its templates are {sorted(cls.templates)}")
        prompts = {}
        for role, (default, fields) in cls.templates.items():
            template = load_template(kwargs["prompts"].get(role, default), fields)
            prompts[role] = {"source": template.name, "sha256": template.sha256}
        kwargs["prompts"] = prompts
        # the augment config's `concurrency` (actors per strategy), when set, sizes the pool
        kwargs["generator"] = generator_kwargs(gen, cls.name, shared.get("concurrency"))
        return kwargs

    @classmethod
    def cache_params(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Params, template hashes and the generator's content settings (not the endpoint's URL,
        the key's variable, limits, time-outs, prices or budget: they change speed or spend)."""
        out = {k: v for k, v in kwargs.items() if k not in ("generator", "prompts") + cls.resource_params}
        out["prompts"] = {role: p["sha256"] for role, p in kwargs.get("prompts", {}).items()}
        gen = kwargs.get("generator", {})
        out["generator"] = {k: gen.get(k) for k in CONTENT_KEYS}
        out["code"] = module_hash(__name__, "augscale.augment.llm.prompts", *cls.code_modules)
        return out

    @classmethod
    def ray_options(cls, **kwargs: Any) -> dict[str, Any]:
        """With a budget, each actor runs its blocks one at a time, in order: the budget then cuts
        one block short, not several half-done ones (which a rerun would all redo)."""
        gen = kwargs.get("generator", {})
        options = {"num_cpus": float(gen.get("cpus_per_actor", 0.5)), "concurrency": int(gen.get("actors", 1))}
        if gen.get("budget_tokens") is not None or gen.get("budget_usd") is not None:
            options["tasks_per_actor"] = 1
        return options

    @classmethod
    def budget_exhausted(cls, usage: dict[str, float], **kwargs: Any) -> str | None:
        gen = kwargs.get("generator", {})
        return budget_reason(usage, gen.get("budget_tokens"), gen.get("budget_usd"))

    @classmethod
    def worker_kwargs(cls, spent: dict[str, float], actors: int, **kwargs: Any) -> dict[str, Any]:
        """Each actor stops at its share of the budget left after the blocks already on disk, so
        that the run as a whole, resumed or not, stays within ``budget_tokens`` / ``budget_usd``."""
        gen = dict(kwargs.get("generator", {}))
        if gen.get("budget_tokens") is not None:
            gen["budget_tokens"] = max(1, int(gen["budget_tokens"] - spent.get("tokens", 0)) // actors)
        if gen.get("budget_usd") is not None:
            gen["budget_usd"] = max(1e-9, (gen["budget_usd"] - spent.get("cost_usd", 0.0)) / actors)
        return {**kwargs, "generator": gen}

    # ----- in a worker ------------------------------------------------------------------
    def __init__(self, task, *, seed: int, resources: dict[str, Any] | None = None, generator: dict[str, Any],
                 prompts: dict[str, dict[str, str]], **params: Any):
        super().__init__(task, seed=seed, resources=resources, **params)
        gen = {k: v for k, v in generator.items() if k not in _EDGE_KEYS}
        self.samples = int(params.get("samples") or generator.get("samples_per_prompt") or 1)
        self.temperature = params.get("temperature")
        self.max_tokens = params.get("max_tokens")
        self.templates_loaded: dict[str, Template] = {}
        for role, p in prompts.items():
            t = load_template(p["source"], self.templates[role][1])
            if t.sha256 != p["sha256"]:
                raise StrategyError(f"prompt template {p['source']} changed after the run started "
                                    f"(hash {t.sha256}, expected {p['sha256']}); rerun to regenerate")
            self.templates_loaded[role] = t
        self.generator = LLMGenerator(**gen)
        self._local = threading.local()  # blocks may run at once: each thread's last block usage

    def generate(self, seeds: list[dict[str, Any]]) -> list[Candidate]:
        per_seed, self._local.usage = self.generator.map_counted(self.one_seed, seeds)
        return [c for cands in per_seed for c in cands]

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        """Every attempt on one seed, kept or rejected (called on the generator's threads)."""
        raise NotImplementedError

    def block_usage(self) -> dict[str, float]:
        return dict(getattr(self._local, "usage", {}))

    def budget_spent(self) -> str | None:
        return self.generator.budget_spent()

    def close(self) -> None:
        self.generator.close()

    # ----- helpers for subclasses --------------------------------------------------------
    def ask(self, role: str, *, n: int | None = None, temperature: float | None = None, **fields: Any) -> ChatResult:
        """Render the ``role`` template with ``fields`` and send it (``n`` samples, default ``self.samples``)."""
        prompt = self.templates_loaded[role].render(**fields)
        return self.generator.chat(to_messages(prompt), n=n or self.samples,
                                   temperature=self.temperature if temperature is None else temperature,
                                   max_tokens=self.max_tokens)

    def evidence(self, results: list[ChatResult], roles: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        """A row's ``meta`` for this strategy: model, templates (name and hash), token usage, extras."""
        return {"model": self.generator.model,
                "prompts": {r: self.templates_loaded[r].evidence() for r in roles},
                "usage": {"requests": len(results), "prompt_tokens": sum(r.prompt_tokens for r in results),
                          "completion_tokens": sum(r.completion_tokens for r in results)},
                **extra}


def request_reason(result: ChatResult) -> str:
    """The rejection reason of a request that failed: ``request_<kind>`` or ``budget_exhausted``."""
    error = result.error or "unknown"
    if error.startswith(BUDGET_EXHAUSTED):
        return BUDGET_EXHAUSTED
    return "request_" + error.split(":", 1)[0].strip()


def rejects(parent_id: str, indices: range | list[int], reason: str, **evidence: Any) -> list[Candidate]:
    """One rejection per attempt index, all for the same reason."""
    return [Candidate.reject(parent_id, i, reason, **evidence) for i in indices]
