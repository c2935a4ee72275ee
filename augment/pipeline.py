"""The augment pipeline: seeds -> candidates -> verify -> persist per block -> dedup -> decontaminate
-> select -> augmented snapshot.

::

    seed snapshot (train.parquet)
      │ cut into blocks of block_size rows; blocks already on disk are skipped (resume)
      ▼
    Ray Data: from_items(pending blocks) ─► BlockRunner actor pool (per strategy)
      │   strategy.generate -> task.verify -> task.difficulty      (blocks.py)
      ▼
    driver: each finished block written atomically to the work folder (streamed; the driver holds
      │     only the blocks in flight)
      ▼
    filters (exact dup, 13-gram + near-test decontamination, MinHash near dup), streamed in a
      │     fixed order over the block files                           (filters.py)
      ▼
    selection of target_size rows, strategies in their shares         (select.py)
      ▼
    {cache}/{task}/augmented/{name}-{version}/train.parquet + manifest.json

The work folder of a strategy is keyed by what its candidates depend on
(``manifest.generation_key``): killed at any point and rerun, the run redoes only the blocks
not on disk, and the snapshot is the one an uninterrupted run writes. A finished config's
snapshot is found by its version and returned without work.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from augscale.augment import blocks, manifest as mf
from augscale.augment.filters import FilterSettings, filter_candidates
from augscale.augment.select import select_rows
from augscale.augment.strategies import Strategy
from augscale.datasets_cache import Snapshot, records_frame, write_snapshot
from augscale.datasets_cache.snapshot import RECORD_SCHEMA, content_hash, task_folder
from augscale.errors import AugscaleError
from augscale.tasks import RECORD_COLUMNS, Task


@dataclass
class StrategySpec:
    """One configured strategy as plain values: its class, its share of the target, its kwargs."""

    cls: type[Strategy]
    share: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.name


@dataclass
class AugmentResult:
    """The snapshot, whether this call wrote it (False: found in the cache), and the summary."""

    snapshot: Snapshot
    created: bool
    summary: dict[str, Any]


def augmented_root(cache_dir: Path, task: Task) -> Path:
    """``{cache}/{task}/augmented``: augmented snapshots, and their work folders under ``.work``."""
    return Path(cache_dir) / task_folder(task) / "augmented"


def augment(task: Task, *, seed_snapshot: Snapshot, eval_snapshot: Snapshot, strategies: list[StrategySpec],
            target_size: int, name: str, cache_dir: Path, filters: FilterSettings | None = None,
            decontam_splits: tuple[str, ...] = ("valid", "test"), seed: int = 0, max_seeds: int | None = None,
            block_size: int = 64, concurrency: int | None = None, config: dict[str, Any] | None = None,
            seed_file: dict[str, Any] | None = None, progress: bool = True) -> AugmentResult:
    """Grow the seed snapshot's train rows into an augmented snapshot (module docstring).

    Args:
        task: the task (verifier, difficulty).
        seed_snapshot: where the seed rows come from (its ``train`` split).
        eval_snapshot: the snapshot whose ``decontam_splits`` inputs no new row may overlap.
        strategies: the strategies, each with its share of ``target_size`` and its kwargs.
        target_size: accepted new rows wanted. Fewer is not an error: the run finishes with what
            passed and the manifest says ``target_reached: false`` with the shortfall.
        name: the snapshot's name (folder ``{name}-{version}``).
        cache_dir: the snapshot cache.
        filters: dedup and decontamination settings.
        decontam_splits: splits of ``eval_snapshot`` checked (n-gram rule); the near-duplicate
            rule checks ``test`` when listed.
        seed: the run's seed (strategies' draws, selection ties).
        max_seeds: use only the first ``max_seeds`` seed rows.
        block_size: seed rows per persisted block (resource-only: not in the version).
        concurrency: actors per strategy (default: the strategy's own, else the cluster's CPUs).
        config: the config as given, recorded in the manifest.
        seed_file: where the seed rows came from when a raw file replaced them (manifest).
        progress: show a progress bar on stderr.

    Returns:
        The snapshot and the run's summary.
    """
    started = time.time()
    filters = filters or FilterSettings()
    seeds_path = seed_snapshot.split_path("train")
    columns = pl.scan_parquet(seeds_path).collect_schema().names()
    for s in strategies:  # data steps declare their columns: checked before any block runs
        missing = [c for c in s.cls.input_columns if c not in columns]
        if missing:
            raise AugscaleError(f"strategy {s.name!r} reads seed columns {missing}; {seeds_path} has {columns}")
    n_seeds = pl.scan_parquet(seeds_path).select(pl.len()).collect().item()
    if max_seeds is not None:
        n_seeds = min(n_seeds, max_seeds)
    gen_keys = {s.name: mf.generation_key(task=task, seeds_version=seed_snapshot.version, strategy_cls=s.cls,
                                          cache_params=s.cls.cache_params(s.kwargs), seed=seed, max_seeds=max_seeds)
                for s in strategies}
    shares = {s.name: s.share for s in strategies}
    filter_dict = vars(filters).copy()
    key = mf.snapshot_key(generation=gen_keys, shares=shares, target_size=target_size, filters=filter_dict,
                          eval_version=eval_snapshot.version, decontam_splits=list(decontam_splits))
    version = content_hash(key)
    root = augmented_root(cache_dir, task)
    final_dir = root / f"{name}-{version}"
    if (final_dir / "manifest.json").is_file():
        snap = Snapshot.open(final_dir)
        if not snap.manifest.get("stopped"):
            return AugmentResult(snap, False, mf.summary(snap.manifest, final_dir, created=False))
        # a budget cut that run short: go on from its blocks on disk (within the budget given now)

    work_dirs = {s.name: root / ".work" / f"{s.name}-{content_hash(gen_keys[s.name], 16)}" / f"b{block_size}"
                 for s in strategies}
    n_blocks = -(-n_seeds // block_size)
    stopped = _generate(task, strategies, work_dirs=work_dirs, seeds_path=seeds_path, n_seeds=n_seeds,
                        n_blocks=n_blocks, block_size=block_size, seed=seed, concurrency=concurrency,
                        progress=progress)

    files = {s.name: [blocks.block_path(work_dirs[s.name], b) for b in sorted(blocks.finished_blocks(work_dirs[s.name]))
                      if b < n_blocks] for s in strategies}
    ordered = [p for s in strategies for p in files[s.name]]  # the fixed order the filters visit rows in
    eval_prompts = [p for split in decontam_splits for p in eval_snapshot.read(split)["prompt"].to_list()]
    test_prompts = eval_snapshot.read("test")["prompt"].to_list() if "test" in decontam_splits else []
    filtered = filter_candidates(ordered, seeds=pl.scan_parquet(seeds_path).slice(0, n_seeds),
                                 eval_prompts=eval_prompts, test_prompts=test_prompts, settings=filters,
                                 target_keyed={p for s in strategies if s.cls.new_targets for p in files[s.name]})
    survivors = _survivors(ordered, filtered.rejected)
    selection = select_rows(survivors, shares=shares, target_size=target_size, seed=seed)
    rows = _collect_rows(ordered, selection.selected)
    counts, usage, gen_seconds = mf.count_by_strategy(files, filtered.rejected, selection, survivors)
    manifest = {
        "kind": "augmented", "task": task.name, "task_params": task.params(), "name": name, "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 2), "generation_seconds": round(gen_seconds, 2),
        "seed_snapshot": {"path": str(seed_snapshot.path), "version": seed_snapshot.version,
                          "kind": seed_snapshot.manifest.get("kind"), "split": "train", "rows_used": n_seeds},
        "eval_snapshot": {"path": str(eval_snapshot.path), "version": eval_snapshot.version},
        "seed_file": seed_file, "config": config or {},
        "config_hash": content_hash({k: v for k, v in (config or {}).items()
                                     if k not in ("block_size", "concurrency")}),
        "code_version": mf.code_version(), "cache_key": key,
        "target_size": target_size, "target_reached": selection.shortfall == 0, "shortfall": selection.shortfall,
        "rows": {"train": rows.height}, "counts": counts, "totals": mf.totals(counts), "usage": usage,
        "contaminated_by": dict(filtered.contaminated_by),
        "selection": {"shares": shares, "quotas": selection.quotas, "taken": selection.taken},
        "filters": filter_dict, "decontam_splits": list(decontam_splits),
        "strategies": {s.name: {"params": s.cls.cache_params(s.kwargs), "share": s.share,
                                "work_dir": str(work_dirs[s.name])} for s in strategies},
        "stopped": stopped, "schema": {c: str(t) for c, t in RECORD_SCHEMA.items()},
        "special_tokens": task.tokens.all(),
    }
    snap = write_snapshot(final_dir, {"train": rows}, manifest, replace=True)
    return AugmentResult(snap, True, mf.summary(snap.manifest, final_dir, created=True))


def _survivors(files: list[Path], rejected: dict[str, str]) -> pl.DataFrame:
    """``id``, ``source``, ``parent_id`` of the verified rows that no filter rejected."""
    if not files:
        return pl.DataFrame(schema={"id": pl.String, "source": pl.String, "parent_id": pl.String})
    gone = pl.Series("id", list(rejected), dtype=pl.String).implode()
    return (pl.scan_parquet(files).filter(pl.col("reject").is_null() & ~pl.col("id").is_in(gone))
            .select("id", "source", "parent_id").collect())


def _collect_rows(files: list[Path], ids: list[str]) -> pl.DataFrame:
    """The selected rows from the block files, in canonical columns and types, sorted by id."""
    if not files or not ids:
        return records_frame([])
    wanted = pl.Series("id", ids, dtype=pl.String).implode()
    frame = (pl.scan_parquet(files).filter(pl.col("reject").is_null() & pl.col("id").is_in(wanted))
             .select(list(RECORD_COLUMNS)).collect())
    return records_frame(frame.sort("id").iter_rows(named=True))


def _generate(task: Task, strategies: list[StrategySpec], *, work_dirs: dict[str, Path], seeds_path: Path,
              n_seeds: int, n_blocks: int, block_size: int, seed: int, concurrency: int | None,
              progress: bool) -> dict[str, str]:
    """Run every strategy over the blocks not yet on disk; returns strategies stopped by a budget."""
    from tqdm import tqdm

    plans = {}
    for s in strategies:
        done = blocks.finished_blocks(work_dirs[s.name])
        plans[s.name] = [{"block": b, "start": b * block_size, "stop": min(n_seeds, (b + 1) * block_size)}
                         for b in range(n_blocks) if b not in done]
    total = n_seeds * len(strategies)
    pending_seeds = sum(p["stop"] - p["start"] for plan in plans.values() for p in plan)
    stopped: dict[str, str] = {}
    bar = tqdm(total=total, initial=total - pending_seeds, unit="seed", desc="augment", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for s in strategies:
            if not plans[s.name]:
                continue
            reason = _run_strategy(task, s, plans[s.name], work_dir=work_dirs[s.name], seeds_path=seeds_path,
                                   n_seeds=n_seeds, seed=seed, concurrency=concurrency, bar=bar)
            if reason:
                stopped[s.name] = reason
    finally:
        bar.close()
    return stopped


def _run_strategy(task: Task, spec: StrategySpec, plan: list[dict[str, int]], *, work_dir: Path,
                  seeds_path: Path, n_seeds: int, seed: int, concurrency: int | None, bar) -> str | None:
    """One strategy's pending blocks through a Ray Data actor pool; each finished block persisted."""
    import ray

    from augscale.llm.raydata import ensure_ray, map_batches

    usage: Counter = Counter(_usage_so_far(work_dir))
    reason = spec.cls.budget_exhausted(dict(usage), **spec.kwargs)
    if reason:  # spent by earlier runs: nothing is sent until the budget is raised
        return reason
    ensure_ray()
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # ours is the one bar
    seeds_lazy = pl.scan_parquet(seeds_path).slice(0, n_seeds)
    resources = spec.cls.build_resources(task, seeds_lazy, **spec.kwargs)
    options = dict(spec.cls.ray_options(**spec.kwargs))
    pool = concurrency or options.pop("concurrency", None) or max(1, int(ray.cluster_resources().get("CPU", 1)))
    options.pop("concurrency", None)
    pool = min(pool, len(plan))
    worker_kwargs = spec.cls.worker_kwargs(dict(usage), pool, **spec.kwargs)
    ds = ray.data.from_items(plan, override_num_blocks=min(len(plan), 200))
    ds = map_batches(ds, blocks.BlockRunner, batch_size=1, concurrency=pool,
                     fn_constructor_kwargs={"strategy_cls": spec.cls, "task_name": task.name,
                                            "task_params": task.params(), "strategy_kwargs": worker_kwargs,
                                            "resources": resources, "seed": seed, "seeds_path": str(seeds_path)},
                     **options)
    partial: dict[int, list[pa.Table]] = {}
    batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for batch in batches:
            for b in _distinct(batch["_block"]):
                part = batch.filter(pc.equal(batch["_block"], b))
                partial.setdefault(b, []).append(part)
                have = sum(t.num_rows for t in partial[b])
                if have < part["_block_rows"][0].as_py():
                    continue
                table = pa.concat_tables(partial.pop(b))
                info = json.loads(table["_block_info"][0].as_py())
                spent = Counter({k: v for k, v in (info.get("usage") or {}).items() if isinstance(v, (int, float))})
                if spent.get("skipped_for_budget"):  # cut short by a budget: not finished, a rerun redoes it
                    # the actor reached its share; other actors' blocks may leave the total below the budget
                    return (spec.cls.budget_exhausted(dict(usage + spent), **spec.kwargs)
                            or f"a worker spent its share of the budget left ({info.get('stopped')}); "
                               f"{int(usage.get('tokens', 0)):,} tokens went into finished blocks")
                blocks.write_block(work_dir, b, table, info)
                bar.update(info.get("seeds", 0))
                usage.update({k: v for k, v in (info.get("usage") or {}).items() if isinstance(v, (int, float))})
                reason = spec.cls.budget_exhausted(dict(usage), **spec.kwargs)
                if reason:
                    return reason
    finally:
        close = getattr(batches, "close", None)
        if close is not None:  # a budget stop: shut the stream down, don't leave it running
            close()
        ctx.enable_progress_bars = saved
    return None


def _distinct(column: pa.ChunkedArray) -> list[int]:
    """The distinct block numbers in a batch, in order of appearance."""
    return list(dict.fromkeys(column.to_pylist()))


def _usage_so_far(work_dir: Path) -> dict[str, float]:
    """Usage summed over the blocks already on disk (a budget counts across resumed runs)."""
    used: Counter = Counter()
    for b in sorted(blocks.finished_blocks(work_dir)):
        info = blocks.block_info(blocks.block_path(work_dir, b))
        used.update({k: v for k, v in (info.get("usage") or {}).items() if isinstance(v, (int, float))})
    return dict(used)
