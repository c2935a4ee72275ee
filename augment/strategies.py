"""Augmentation strategies: the interface every strategy implements, and the registry of short names.

A strategy turns a block of seed records into candidates. The pipeline (``pipeline.py``) owns
everything around it: blocking, verification with the task's verifier, difficulty, per-block
persistence and resume, dedup, decontamination and selection. A strategy only generates.

Lifecycle (the same for an offline strategy and an LLM one):

1. At the edge (CLI), ``Params`` validates the config's ``params`` (unknown keys are errors)
   and :meth:`Strategy.init_kwargs` turns them, plus any shared config section the strategy
   needs (e.g. an LLM ``generator``), into plain keyword arguments.
2. On the driver, once: :meth:`Strategy.build_resources` computes read-only shared state from
   the seed rows (e.g. ViGGO's attribute values seen in training). It is passed to every worker.
3. In a Ray Data actor: ``__init__(task, seed=..., resources=..., **kwargs)`` opens what is
   expensive (an HTTP client, a model) once; :meth:`Strategy.generate` is called per *input
   block* of seeds and returns one :class:`Candidate` per attempt. The pipeline persists a
   block's candidates together, so a block that is on disk is never generated again: an LLM
   strategy's requests for finished blocks are not resent after a crash.

Class methods tell the pipeline how to run a strategy: :meth:`Strategy.ray_options` sizes
its actor pool (an LLM strategy asks for many actors, or GPUs for a local model), and
:attr:`Strategy.resource_params` names the kwargs that change speed but not content (left out
of cache keys). Usage (tokens, cost) that a block spent goes in :meth:`Strategy.block_usage`,
and :meth:`Strategy.budget_exhausted` lets the driver stop launching blocks when a budget is
spent; the run then finishes with what was accepted.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict

from augscale.errors import AugscaleError
from augscale.tasks import Task, UnknownNameError, unknown_name_message

# Modules that register built-in strategies when imported (the LLM strategies add theirs here).
BUILTIN_MODULES: tuple[str, ...] = (
    "augscale.augment.substitute_gsm8k",
    "augscale.augment.substitute_sql",
    "augscale.augment.substitute_viggo",
    "augscale.augment.llm.gsm8k",
    "augscale.augment.llm.viggo",
    "augscale.augment.llm.sql",
    "augscale.augment.llm.self_sample",
)


class StrategyError(AugscaleError, ValueError):
    """A strategy that cannot be used as configured (e.g. not available for the task)."""


class StrategyParams(BaseModel):
    """Base of a strategy's ``params`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass
class Candidate:
    """One attempt of a strategy on one seed: a new record's fields, or a rejection with its reason.

    ``index`` numbers the attempts on one seed (0, 1, ...); with the parent id and the strategy
    name it makes the row's id, so it must be deterministic. ``evidence`` goes into the row's
    ``meta`` under the strategy's name (what was substituted, the prompt hash, token usage).

    Example: ``Candidate("gsm8k-train-00003", 0, prompt="Julie is reading a 150-page book...",
    target="Maila read 15 x 2 = <<15*2=30>>30 pages today...\\n#### 52", answer="52",
    evidence={"substituted": {"120": "150", "12": "15"}})``.
    """

    parent_id: str
    index: int
    prompt: str | None = None
    target: str | None = None
    answer: str | None = None
    context: str | None = None
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def reject(cls, parent_id: str, index: int, reason: str, **evidence: Any) -> "Candidate":
        return cls(parent_id, index, reason=reason, evidence=evidence)


class Strategy:
    """Base class of an augmentation strategy for one task.

    Class attributes:
        name: the short name users type in a config (``substitute``).
        task: the task it is for (``gsm8k``); one name may be registered for several tasks.
        Params: the pydantic model of its ``params`` config section.
        input_columns: seed columns it reads (checked before the first block runs).
        resource_params: kwargs that change speed, not content (left out of cache keys).
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    input_columns: ClassVar[tuple[str, ...]] = ("id", "prompt", "target", "answer")
    resource_params: ClassVar[tuple[str, ...]] = ()
    # True for a strategy that writes new targets for the seeds' own inputs (answer_augment,
    # self_sample): the filters then dedup on input and target, and skip the near-duplicate check
    # of inputs (which would reject every such row as a copy of its seed).
    new_targets: ClassVar[bool] = False

    def __init__(self, task: Task, *, seed: int, resources: dict[str, Any] | None = None, **params: Any):
        self.task_obj = task
        self.seed = seed
        self.resources = resources or {}
        self.params = params

    # ----- at the edge and on the driver ----------------------------------------------
    @classmethod
    def init_kwargs(cls, params: StrategyParams, shared: dict[str, Any]) -> dict[str, Any]:
        """Plain keyword arguments for ``__init__`` from the validated params.

        Args:
            params: this strategy's validated ``params``.
            shared: the whole augment config as a dict (an LLM strategy takes ``generator``).
        """
        return params.model_dump()

    @classmethod
    def cache_params(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The kwargs that determine the candidates (cache key): all but ``resource_params``."""
        return {k: v for k, v in kwargs.items() if k not in cls.resource_params}

    @classmethod
    def ray_options(cls, **kwargs: Any) -> dict[str, Any]:
        """Actor-pool size and resources per actor for ``map_batches``: ``concurrency`` (None: the
        pipeline's default), ``num_cpus``, ``num_gpus`` and any other ``map_batches`` argument
        (e.g. ``max_concurrency`` for an async LLM client)."""
        return {"num_cpus": 1, "concurrency": None}

    @classmethod
    def build_resources(cls, task: Task, seeds, **kwargs: Any) -> dict[str, Any]:
        """Shared read-only state computed once from the seeds (a ``polars.LazyFrame``)."""
        return {}

    @classmethod
    def budget_exhausted(cls, usage: dict[str, float], **kwargs: Any) -> str | None:
        """Given the usage summed over finished blocks, a reason to stop launching blocks, or None."""
        return None

    @classmethod
    def worker_kwargs(cls, spent: dict[str, float], actors: int, **kwargs: Any) -> dict[str, Any]:
        """The kwargs each of ``actors`` workers is built with, given what finished blocks ``spent``
        (a budgeted strategy gives each worker its share of the budget left)."""
        return kwargs

    # ----- in a worker ------------------------------------------------------------------
    def generate(self, seeds: list[dict[str, Any]]) -> Iterable[Candidate]:
        """Candidates for one input block of seed records (each a dict of canonical columns).

        Every attempt yields one Candidate, kept or rejected: failures are counted data.
        """
        raise NotImplementedError

    def block_usage(self) -> dict[str, float]:
        """What the last :meth:`generate` call spent (``{"tokens": ..., "cost_usd": ...}``)."""
        return {}

    def budget_spent(self) -> str | None:
        """Why this worker stopped sending requests (its own spend reached the budget), or None."""
        return None

    def close(self) -> None:
        """Release what ``__init__`` opened."""

    def rng(self, parent_id: str) -> random.Random:
        """A random generator that depends only on the run's seed, the strategy and the parent row,
        so a row's variants are the same whatever block it falls in and whichever worker runs it."""
        return random.Random(f"{self.seed}:{self.name}:{parent_id}")


_REGISTRY: dict[tuple[str, str], type[Strategy]] = {}
_loaded = False


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Register a strategy class under ``(cls.name, cls.task)``; usable as a decorator.

    Raises:
        ValueError: the pair is already registered, or the class lacks a name or task.
    """
    if not cls.name or not cls.task:
        raise ValueError(f"{cls.__qualname__}: a strategy needs a name and a task")
    key = (cls.name, cls.task)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise ValueError(f"strategy {cls.name!r} for task {cls.task!r} is already registered "
                         f"({_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__})")
    _REGISTRY[key] = cls
    return cls


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def strategy_names(task: str | None = None) -> list[str]:
    """Registered strategy names (for one task, when given)."""
    _load_builtin()
    return sorted({n for n, t in _REGISTRY if task is None or t == task})


def get_strategy(name: str, task: str) -> type[Strategy]:
    """The strategy class registered as ``name`` for ``task``.

    Raises:
        UnknownNameError: no strategy has that name (lists the valid ones, suggests the nearest).
        StrategyError: the strategy exists, but not for this task (lists the task's strategies).
    """
    _load_builtin()
    if name not in strategy_names():
        raise UnknownNameError(unknown_name_message("strategy", name, strategy_names()))
    if (name, task) not in _REGISTRY:
        theirs = strategy_names(task)
        has = ", ".join(theirs) if theirs else "none yet"
        others = sorted(t for n, t in _REGISTRY if n == name)
        raise StrategyError(f"strategy {name!r} is not available for task {task!r} (it is for: "
                            f"{', '.join(others)}). Strategies for {task}: {has}.")
    return _REGISTRY[(name, task)]
