"""From a checked ``AugmentConfig`` to a pipeline call: the edge where the config is unpacked.

The CLI (``augscale augment``) and the experiment grid both call :func:`run_augment`; the
pipeline itself takes plain arguments. ``seeds_file`` replaces the seed rows with a raw file in
the task's format; its rows become a ``seeds`` snapshot in the cache
(``{cache}/{task}/seeds/{version}``), so that the augmented manifest points at the originals
like any other seed snapshot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from augscale.augment.filters import FilterSettings
from augscale.augment.pipeline import AugmentResult, StrategySpec, augment
from augscale.augment.strategies import get_strategy
from augscale.datasets_cache import Snapshot, default_cache_dir, records_frame, resolve_snapshot, write_snapshot
from augscale.datasets_cache.snapshot import content_hash, sha256_file, task_folder
from augscale.tasks import RawDataError, Task


def strategy_specs(cfg) -> list[StrategySpec]:
    """The config's strategies as classes, shares and plain kwargs."""
    shared = cfg.model_dump()
    specs = []
    for s in cfg.strategies:
        cls = get_strategy(s.name, cfg.task.name)
        params = cls.Params.model_validate(s.params)
        specs.append(StrategySpec(cls, s.share, cls.init_kwargs(params, shared)))
    return specs


def seeds_snapshot_from_file(task: Task, path: Path, cache_dir: Path) -> Snapshot:
    """A raw seed file (the task's format: gsm8k JSONL, viggo CSV, sql JSONL) as a ``seeds`` snapshot.

    Raises:
        RawDataError: the file is missing or malformed (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: seed file not found")
    sha = sha256_file(path)
    version = content_hash({"task": task.name, "params": task.params(), "code": task.code_fingerprint(),
                            "sha256": sha})
    folder = Path(cache_dir) / task_folder(task) / "seeds" / version
    if (folder / "manifest.json").is_file():
        return Snapshot.open(folder)
    rows = task.read_raw_file(path)
    records = [task.to_record(r, raw_split="seeds", index=i) for i, r in enumerate(rows)]
    for r in records:
        r["split"] = "train"
    manifest = {"kind": "seeds", "task": task.name, "task_params": task.params(), "version": version,
                "source": {"kind": "file", "path": str(path.resolve()), "sha256": sha},
                "rows": {"train": len(records)}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return write_snapshot(folder, {"train": records_frame(records)}, manifest)


def run_augment(cfg, *, seeds_file: Path | str | None = None, progress: bool = True) -> AugmentResult:
    """Run the augment pipeline for a validated ``AugmentConfig``.

    Args:
        cfg: the config (validated: strategy names and params already checked).
        seeds_file: a raw file in the task's format that replaces the seed rows.
        progress: show a progress bar on stderr.

    Raises:
        RawDataError: a malformed seed file or raw data file.
        DataSourceError: no raw data could be found for the task.
    """
    task = cfg.task.build()
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    eval_snapshot = resolve_snapshot(task, snapshot=cfg.data.snapshot, data_dir=cfg.data.data_dir,
                                     cache_dir=cache_dir)
    seed_file_info: dict[str, Any] | None = None
    seed_snapshot = eval_snapshot
    if seeds_file is not None:
        seed_snapshot = seeds_snapshot_from_file(task, Path(seeds_file), cache_dir)
        seed_file_info = seed_snapshot.manifest["source"]
    f = cfg.filters
    filters = FilterSettings(near_duplicate_threshold=f.near_duplicate_threshold, num_perm=f.num_perm,
                             shingle_words=f.shingle_words, against_seeds=f.against_seeds,
                             decontam_ngram=f.decontam_ngram, decontam_near_threshold=f.decontam_near_threshold)
    return augment(
        task, seed_snapshot=seed_snapshot, eval_snapshot=eval_snapshot, strategies=strategy_specs(cfg),
        target_size=cfg.target_size, name=cfg.name, cache_dir=cache_dir, filters=filters,
        decontam_splits=tuple(f.decontam_splits), seed=cfg.seed, max_seeds=cfg.max_seeds,
        block_size=cfg.block_size, concurrency=cfg.concurrency, config=cfg.model_dump(mode="json"),
        seed_file=seed_file_info, progress=progress,
    )
