"""The augmented rows of an experiment: reused from given snapshots, or made (and cached) on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from augscale.config import AblateConfig, AugmentConfig, load_config, validate_config
from augscale.datasets_cache import Snapshot
from augscale.errors import AugscaleError
from augscale.tasks import Task


def augmented_snapshots(cfg: AblateConfig, *, task: Task, seed_snapshot: Snapshot, pool: Snapshot, config_dir: Path,
                        log: Callable[[str], None]) -> list[Path]:
    """Parquet files of augmented rows for the grid's strategies.

    The augment config runs with the experiment's original pool as its seed snapshot, so every
    new row's parent is an original the arms may train on. The augment pipeline caches its
    snapshot by config hash: a rerun of the experiment finds it and does no work.

    Raises:
        AugscaleError: augmented arms requested but no augmentation source configured.
    """
    paths = [Path(p) / "train.parquet" if Path(p).is_dir() else Path(p) for p in cfg.augment.snapshots]
    src = cfg.augment
    if src.config is None and src.inline is None:
        if not paths:
            raise AugscaleError("arms.strategies names augmentation strategies but augment has neither config, "
                                "inline nor snapshots: set augment.config to an augment config file")
        return paths
    if src.config is not None:
        path = Path(src.config)
        path = path if path.is_absolute() or path.exists() else config_dir / path
        aug_cfg = load_config(path, AugmentConfig)
    else:
        aug_cfg = validate_config(AugmentConfig, src.inline, "augment.inline")
    if aug_cfg.task.name != task.name:
        raise AugscaleError(f"augment config task {aug_cfg.task.name!r} differs from the experiment's {task.name!r}")
    wanted = {s for s in cfg.arms.strategies if s != "original"}
    have = {s.name for s in aug_cfg.strategies}
    if wanted - have:
        raise AugscaleError(f"arms.strategies {sorted(wanted - have)} are not in the augment config's strategies "
                            f"{sorted(have)}")
    aug_cfg = aug_cfg.model_copy(update={"data": aug_cfg.data.model_copy(update={
        "snapshot": str(pool.path), "cache_dir": cfg.data.cache_dir or aug_cfg.data.cache_dir})})
    from augscale.augment.run import run_augment

    log(f"augmenting from the {pool.manifest['rows']['train']:,}-row pool: {sorted(have)}, "
        f"target {aug_cfg.target_size:,} rows")
    result = run_augment(aug_cfg, progress=True)
    verb = "made" if result.created else "reused from the cache"
    log(f"augmented snapshot {result.snapshot.version} {verb}: {result.snapshot.path}")
    return paths + [result.snapshot.split_path("train")]
