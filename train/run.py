"""The edge of ``augscale train``: a parsed :class:`augscale.config.TrainConfig` unpacked into plain calls.

:func:`train_from_config` resolves the data snapshot, builds the model when the config asks
for a small one, writes the mixture (curriculum order) and the valid rows into the run
folder, and calls :func:`augscale.train.driver.run_training`. The ablation grid calls it
per arm with a config whose ``data.size``, ``seed``, ``data.curriculum`` or ``max_steps``
differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from augscale.train.driver import TrainingError, run_training
from augscale.train.mixture import build_mixture, write_mixture


def snapshot_info(path: str | Path) -> dict[str, Any]:
    """Version and kind of a snapshot folder (or a bare Parquet file) for the run manifest."""
    path = Path(path)
    manifest = path / "manifest.json" if path.is_dir() else path.parent / "manifest.json"
    info: dict[str, Any] = {"path": str(path)}
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        info.update({k: m.get(k) for k in ("task", "kind", "version", "created")})
    return info


def prepare_model(init_cfg, folder: Path) -> Path:
    """The small model of a ``model.init`` config, built once into ``folder`` (reused on rerun)."""
    from augscale.train.model_init import init_from_config

    if (folder / "config.json").is_file():
        return folder
    path, _ = init_from_config(init_cfg, out_dir=folder)
    return Path(path)


def write_valid(snapshot, path: Path, limit: int | None) -> Path | None:
    """The valid rows (the first ``limit``), or None when the snapshot has none."""
    src = snapshot.split_path("valid")
    if not src.is_file():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    lf = pl.scan_parquet(src)
    if limit:
        lf = lf.head(limit)
    lf.with_row_index("order").sink_parquet(path)
    return path if pl.scan_parquet(path).select(pl.len()).collect().item() else None


def _settings(config: dict | None) -> dict | None:
    """A config without what does not change the run (the progress bar)."""
    return {k: v for k, v in config.items() if k != "progress"} if config else config


def train_from_config(cfg, *, out_dir: str | Path | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Run one training from a validated TrainConfig; returns the run summary (see run_training).

    A run folder that holds this same config continues (a finished run returns its summary).

    Raises:
        MixtureError: the data cannot make the requested mixture.
        TrainingError: the run failed or cannot start, or ``out_dir`` holds a run with another config.
        ModelLoadError: the model cannot be loaded.
    """
    from augscale.datasets_cache import resolve_snapshot

    task = cfg.task.build()
    run_dir = Path(out_dir or cfg.out_dir).resolve()
    old = run_dir / "manifest.json"
    if old.is_file() and _settings(json.loads(old.read_text()).get("config")) != _settings(cfg.model_dump(mode="json")):
        raise TrainingError(f"{run_dir} holds a run with another config (see its manifest.json); choose another "
                            "out_dir, or delete that folder to start over")
    src = cfg.data.original
    snap = resolve_snapshot(task, snapshot=src.snapshot, data_dir=src.data_dir, cache_dir=src.cache_dir)
    model_path = cfg.model.path
    if model_path is None:  # a small model trained on this run's snapshot unless init names its own data
        init = cfg.model.init
        if not init.data.model_fields_set:
            init = init.model_copy(update={"data": src})
        model_path = str(prepare_model(init, run_dir / "base_model"))

    mix = build_mixture(snap.path, cfg.data.augmented, size=cfg.data.size, shares=cfg.data.shares, seed=cfg.seed)
    train_path = write_mixture(mix, run_dir / "data" / "train.parquet", curriculum=cfg.data.curriculum, seed=cfg.seed)
    valid_path = write_valid(snap, run_dir / "data" / "valid.parquet", cfg.data.valid_limit)
    manifest = {
        "config": cfg.model_dump(mode="json"),
        "data": {"original": snapshot_info(snap.path), "augmented": [snapshot_info(a) for a in cfg.data.augmented],
                 "curriculum": cfg.data.curriculum, "train_file": str(train_path),
                 "valid_file": str(valid_path) if valid_path else None},
        "model": model_path,
        "mixture": mix.summary(),
    }
    b, o, s, d, sc = cfg.batching, cfg.optimizer, cfg.schedule, cfg.deepspeed, cfg.scaling
    return run_training(
        model_path=model_path, train_path=str(train_path), valid_path=str(valid_path) if valid_path else None,
        out_dir=str(run_dir), task_name=task.name, task_params=task.params(),
        special_tokens=cfg.model.special_tokens, attn_implementation=cfg.model.attn_implementation,
        gradient_checkpointing=cfg.model.gradient_checkpointing, loss_on=cfg.loss_on,
        batching=b.strategy, micro_batch_size=b.micro_batch_size, window=b.window, max_seq_len=b.max_seq_len,
        lr=o.lr, weight_decay=o.weight_decay, betas=o.betas, eps=o.eps, warmup_steps=s.warmup_steps,
        warmup_ratio=s.warmup_ratio, decay=s.decay, min_lr_ratio=s.min_lr_ratio, epochs=cfg.epochs,
        max_steps=cfg.max_steps, grad_accum=cfg.grad_accum, clip_grad_norm=cfg.clip_grad_norm,
        zero_stage=d.zero_stage, offload_optimizer=d.offload_optimizer, offload_params=d.offload_params,
        precision=d.precision, num_workers=sc.num_workers, use_gpu=sc.use_gpu, cpus_per_worker=sc.cpus_per_worker,
        gpus_per_worker=sc.gpus_per_worker, placement_strategy=sc.placement_strategy,
        keep_checkpoints=cfg.checkpoint.keep,
        max_failures=cfg.failure.max_failures, seed=cfg.seed,
        progress=cfg.progress if progress is None else progress, manifest=manifest,
    )
