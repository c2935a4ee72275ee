"""The one wrapper around ``Dataset.map_batches``, so that Ray's changing arguments live here.

Ray Data's actor-pool arguments have moved between releases (``compute=ActorPoolStrategy``,
then ``concurrency=``, which Ray 2.60 deprecates again in favour of ``compute=``). Every
stage of augscale calls :func:`map_batches` instead of ``ds.map_batches``, with plain
arguments: a callable class gets a fixed or autoscaling actor pool, a function gets tasks.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


def _compute(is_class: bool, concurrency: int | tuple[int, int] | None, tasks_per_actor: int | None = None):
    """``concurrency`` (n, or (min, max)) -> Ray's compute strategy object (None: Ray's default)."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    if is_class:
        if concurrency is None:
            concurrency = 1  # one actor holding the model; Ray's default autoscales without bound
        per_actor = {"max_tasks_in_flight_per_actor": tasks_per_actor} if tasks_per_actor else {}
        if isinstance(concurrency, int):
            return ActorPoolStrategy(size=concurrency, **per_actor)
        if len(concurrency) == 2:
            return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1], **per_actor)
        lo, hi, initial = concurrency
        return ActorPoolStrategy(min_size=lo, max_size=hi, initial_size=initial, **per_actor)
    if concurrency is None:
        return None
    if not isinstance(concurrency, int):
        raise ValueError(f"concurrency for a function must be one number of tasks, got {concurrency!r}")
    return TaskPoolStrategy(size=concurrency)


def map_batches(ds, fn_or_class: Callable | type, *, batch_size: int | None, concurrency: int | tuple | None = None,
                num_cpus: float | None = None, num_gpus: float | None = None,
                fn_constructor_kwargs: dict[str, Any] | None = None, tasks_per_actor: int | None = None,
                **kw: Any):
    """Apply a function (Ray tasks) or a callable class (an actor pool) to batches of ``ds``.

    Args:
        ds: a ``ray.data.Dataset``.
        fn_or_class: ``f(batch) -> batch``, or a class whose ``__init__`` loads what is expensive
            (a model, a client) once per actor and whose ``__call__(batch)`` returns a batch.
        batch_size: rows per batch (an explicit number: required when ``num_gpus`` is set).
        concurrency: for a class, the actor pool: ``n`` fixed actors (default 1), ``(min, max)``
            autoscaling, or ``(min, max, initial)``; for a function, at most ``n`` tasks at once.
        num_cpus, num_gpus: resources reserved per actor or task (``num_gpus=1``: one GPU per model copy).
        fn_constructor_kwargs: keyword arguments of the class's ``__init__`` (classes only).
        tasks_per_actor: batches an actor holds at once (classes only; None: Ray's default, 4).
            1 runs each actor's batches one after another, in the order it gets them.
        **kw: passed through to ``Dataset.map_batches`` (``batch_format``, ``zero_copy_batch``,
            ``runtime_env``, ``memory``, ...).

    Returns:
        The lazily transformed dataset.

    Raises:
        ValueError: constructor arguments given for a function, or a bad ``concurrency`` for one.
    """
    is_class = inspect.isclass(fn_or_class)
    if fn_constructor_kwargs and not is_class:
        raise ValueError("fn_constructor_kwargs is only for a callable class, not a function")
    args: dict[str, Any] = {"batch_size": batch_size, **kw}
    compute = _compute(is_class, concurrency, tasks_per_actor)
    if compute is not None:
        args["compute"] = compute
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    if num_gpus:
        args["num_gpus"] = num_gpus
    if fn_constructor_kwargs:
        args["fn_constructor_kwargs"] = fn_constructor_kwargs
    return ds.map_batches(fn_or_class, **args)


def ensure_ray(min_cpus: int = 0, runtime_env: dict[str, Any] | None = None) -> None:
    """Start Ray once per process: join ``RAY_ADDRESS`` when set, else a new local instance.

    A local instance counts at least ``min_cpus`` logical CPUs (a 2-core laptop running two
    one-CPU training workers still needs room for the Ray Data pipeline that feeds them), and
    ``address="local"`` keeps it from attaching to another Ray instance on the same machine.
    """
    import os

    import ray

    if ray.is_initialized():
        return
    env = runtime_env or {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=env)
    else:
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, min_cpus), include_dashboard=False,
                 runtime_env=env)
