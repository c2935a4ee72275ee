"""Task registry: the short names users type (``gsm8k``, ``viggo``, ``sql``, ``jsonl``)."""

from __future__ import annotations

import difflib
from typing import Any, Callable

from augscale.errors import AugscaleError
from augscale.tasks.base import RECORD_COLUMNS, SPLITS, RawDataError, SpecialTokens, Task, Verdict, make_record

_REGISTRY: dict[str, Callable[..., Task]] = {}


class UnknownNameError(AugscaleError, KeyError):
    """A short name not in a registry; the message lists the valid names and the nearest."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return f"unknown {kind} {name!r}.{hint} Valid: {', '.join(sorted(valid))}."


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Add a task under a short name. Raises ValueError on a duplicate name."""
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def get_task(name: str, /, **params: Any) -> Task:
    """The task registered as ``name`` (``params`` go to the jsonl task's columns).

    Raises:
        UnknownNameError: the name is not registered (lists the valid ones).
    """
    if name not in _REGISTRY:
        raise UnknownNameError(unknown_name_message("task", name, task_names()))
    return _REGISTRY[name](**params)


def _register_builtin() -> None:
    from augscale.tasks.gsm8k import GSM8kTask
    from augscale.tasks.jsonl import JsonlTask
    from augscale.tasks.sql import SQLTask
    from augscale.tasks.viggo import ViggoTask

    register_task("gsm8k", GSM8kTask)
    register_task("viggo", ViggoTask)
    register_task("sql", SQLTask)
    register_task("jsonl", JsonlTask)


_register_builtin()

__all__ = ["RECORD_COLUMNS", "SPLITS", "RawDataError", "SpecialTokens", "Task", "Verdict", "make_record",
           "get_task", "register_task", "task_names", "UnknownNameError", "unknown_name_message"]
