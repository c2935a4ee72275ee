"""``augscale ablate``: train and evaluate every arm of a scaling-by-data grid, then write the report.

Run folder layout::

    {out_dir}/
      config.yaml            the resolved ablation config
      model/                 the initial model every arm starts from (when built from a config)
      data/pool/             the original pool: a nested subset of the training split (a snapshot)
      data/augmented.parquet augmented rows whose parent is in the pool
      arms/{arm}/train/      the arm's training run (checkpoints, metrics.jsonl)
      arms/{arm}/eval/       predictions.parquet, metrics.json
      arms/{arm}/items.parquet   per-item correctness, for paired tests
      arms/{arm}/result.json     written last: an arm with it is finished and reused on rerun
      results.csv, results.md, scaling.png, report.md

Arms run one after another; each arm's training uses the whole Ray cluster (its workers and
data pipeline), and a finished arm is never retrained.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import polars as pl
import yaml

from augscale.config import AblateConfig, TrainConfig, load_config, validate_config
from augscale.datasets_cache import Snapshot, resolve_snapshot, write_snapshot
from augscale.datasets_cache.snapshot import content_hash
from augscale.errors import AugscaleError
from augscale.experiment.grid import Arm, arm_sizes, enumerate_arms
from augscale.tasks import Task

Log = Callable[[str], None]


def _resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or p.exists() else (base / p)


def load_train_base(cfg: AblateConfig, config_dir: Path) -> TrainConfig:
    """The base train config (a file relative to the ablation config, or inline keys)."""
    if isinstance(cfg.train, str):
        return load_config(_resolve_path(config_dir, cfg.train), TrainConfig)
    return validate_config(TrainConfig, cfg.train, "train (inline in the ablation config)")


def original_pool(snapshot: Snapshot, size: int | None, seed: int, out_dir: Path) -> Snapshot:
    """The originals the experiment may use: all training rows, or a nested subset as its own snapshot.

    The subset is the first ``size`` rows of the same seeded order the mixtures use, so that
    every arm's originals are inside the pool and smaller pools are inside larger ones.
    """
    n = snapshot.manifest["rows"]["train"]
    if size is None or size >= n:
        return snapshot
    from augscale.train.mixture import build_mixture

    version = content_hash({"parent": snapshot.version, "size": size, "seed": seed})
    folder = out_dir / "data" / f"pool-{version}"
    if (folder / "manifest.json").is_file():
        return Snapshot.open(folder)
    mix = build_mixture(snapshot.path, size=size, seed=seed)
    train = snapshot.read("train").filter(pl.col("id").is_in(mix.index["id"].to_list()))
    frames = {"train": train, "valid": snapshot.read("valid"), "test": snapshot.read("test")}
    manifest = {**snapshot.manifest, "kind": "subset", "version": version, "parent_version": snapshot.version,
                "parent_path": str(snapshot.path), "subset_seed": seed,
                "rows": {s: f.height for s, f in frames.items()}}
    return write_snapshot(folder, frames, manifest)


def pool_augmented(paths: list[Path], pool: Snapshot, out_dir: Path) -> Path | None:
    """Augmented rows whose parent is in the pool, as one Parquet file (None when there are none)."""
    if not paths:
        return None
    pool_ids = pool.read("train")["id"]
    rows = pl.concat([pl.scan_parquet(p) for p in paths], how="diagonal_relaxed")
    rows = rows.filter(pl.col("parent_id").is_in(pool_ids.implode())).collect()
    target = out_dir / "data" / f"augmented-{pool.version}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    rows.write_parquet(tmp)
    tmp.replace(target)
    return target


def generation_usage(paths: list[Path]) -> dict[str, dict[str, float]]:
    """Per strategy: the LLM tokens and USD its augmentation spent and the rows it accepted.

    Read from the manifests of the augmented snapshots (``usage`` and ``counts``); a Parquet
    file with no manifest beside it adds nothing (its cost is unknown).
    Example: ``{"rephrase": {"tokens": 120000, "cost_usd": 0.05, "accepted": 800}}``.
    """
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        manifest = Path(path).parent / "manifest.json"
        if not manifest.is_file():
            continue
        m = json.loads(manifest.read_text())
        for name, used in (m.get("usage") or {}).items():
            acc = out.setdefault(name, {"tokens": 0, "cost_usd": 0.0, "accepted": 0})
            acc["tokens"] += used.get("tokens", 0) or 0
            acc["cost_usd"] += used.get("cost_usd", 0.0) or 0.0
            acc["accepted"] += (m.get("counts") or {}).get(name, {}).get("accepted", 0)
    return out


def arm_generation(usage: dict[str, dict[str, float]], strategy: str, n_augmented: int) -> tuple[int, float]:
    """(tokens, USD) of the augmented rows an arm trains on: its share of what its strategy spent,
    rejected attempts included (spend per accepted row x the arm's augmented rows)."""
    u = usage.get(strategy)
    if not u or not u["accepted"] or n_augmented <= 0:
        return 0, 0.0
    share = n_augmented / u["accepted"]
    return round(u["tokens"] * share), round(u["cost_usd"] * share, 6)


def steps_for(rows: int, base: TrainConfig) -> int:
    """Optimizer steps of one epoch over ``rows`` examples with the base config's batch geometry."""
    per_step = base.batching.micro_batch_size * base.scaling.num_workers * base.grad_accum
    return max(1, math.ceil(rows / per_step))


def arm_train_config(base: TrainConfig, arm: Arm, *, pool: Snapshot, augmented: Path | None, model_path: str,
                     budget_mode: str, epochs: int, steps: int | None, arm_dir: Path) -> TrainConfig:
    """The base train config with this arm's data, order, seed, budget and run folder."""
    data = base.data.model_copy(update={
        "original": base.data.original.model_copy(update={"snapshot": str(pool.path)}),
        "augmented": [str(augmented)] if augmented is not None and arm.strategy != "original" else [],
        "size": arm.n_train,
        "shares": {arm.strategy: 1.0} if arm.strategy != "original" else None,
        "curriculum": arm.curriculum,
    })
    model = base.model.model_copy(update={"path": model_path, "init": None})
    update: dict[str, Any] = {"data": data, "model": model, "seed": arm.seed, "out_dir": str(arm_dir / "train")}
    if budget_mode == "steps":
        update.update(max_steps=steps, epochs=base.epochs)
    else:
        update.update(epochs=epochs, max_steps=None)
    return base.model_copy(update=update)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def arm_settings(train_cfg: TrainConfig, eval_cfg, augmented_from: list[Path], model: dict[str, Any]) -> str:
    """A hash of everything that decides an arm's result: its train config, the evaluation, the
    augmented snapshots its rows come from and the initial model's settings."""
    return content_hash({"train": train_cfg.model_dump(mode="json"), "eval": eval_cfg.model_dump(mode="json"),
                         "augmented_from": sorted(str(p) for p in augmented_from), "model": model}, 16)


def check_reusable(arm_dir: Path, settings: str) -> bool:
    """True when the arm finished earlier with the same settings (reuse it).

    Raises:
        AugscaleError: it finished with other settings: reusing it would mix configs in one report.
    """
    result = arm_dir / "result.json"
    if not result.is_file():
        return False
    before = json.loads(result.read_text()).get("settings")
    if before is not None and before != settings:
        raise AugscaleError(
            f"{arm_dir} was trained with other settings (the config changed since: train, eval, augmentation or "
            f"model). Give the experiment a new out_dir, or delete {arm_dir} to retrain it.")
    return True


def run_arm(task: Task, arm: Arm, train_cfg: TrainConfig, *, eval_snapshot: Snapshot, eval_cfg, arm_dir: Path,
            n_original: int, log: Log, generation: dict[str, dict[str, float]] | None = None,
            settings: str | None = None) -> dict[str, Any]:
    """Train then evaluate one arm; write items.parquet and, last, result.json."""
    from augscale.evaluate.run import evaluate_model
    from augscale.train.run import train_from_config

    if arm_dir.exists():  # an unfinished arm from a killed run: start it clean
        shutil.rmtree(arm_dir)
    arm_dir.mkdir(parents=True)
    log(f"[{arm.name}] training on {arm.n_train:,} rows ({arm.strategy}, {arm.curriculum}, seed {arm.seed})")
    summary = train_from_config(train_cfg)
    log(f"[{arm.name}] evaluating {summary['final']}")
    metrics = evaluate_model(
        task, eval_snapshot, model_path=summary["final"], split=eval_cfg.split, limit=eval_cfg.limit,
        max_new_tokens=eval_cfg.max_new_tokens, batch_size=eval_cfg.batch_size, concurrency=eval_cfg.concurrency,
        num_gpus=eval_cfg.num_gpus, compute_loss=True, seed=arm.seed, out_dir=arm_dir / "eval",
    )
    preds = pl.read_parquet(arm_dir / "eval" / "predictions.parquet")
    preds.select("id", "correct").write_parquet(arm_dir / "items.parquet")
    n_augmented = max(0, arm.n_train - n_original)
    gen_tokens, gen_cost = arm_generation(generation or {}, arm.strategy, n_augmented)
    result = {
        **arm.as_dict(), "arm": arm.name, "n_original": min(arm.n_train, n_original),
        "n_augmented": n_augmented, "metrics": _headline_metrics(metrics),
        "train_tokens": summary.get("train_tokens"), "train_seconds": summary.get("train_seconds"),
        "optimizer_steps": summary.get("optimizer_steps"), "generation_tokens": gen_tokens, "cost_usd": gen_cost,
        "checkpoint": summary["final"], "eval_dir": str(arm_dir / "eval"), "settings": settings,
    }
    _write_json(arm_dir / "result.json", result)
    log(f"[{arm.name}] " + ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items()
                                     if isinstance(v, (int, float))))
    return result


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "accuracy_flexible", "exact_match", "execution_accuracy", "function_accuracy",
            "format_validity", "reference_loss", "mean_output_tokens", "n")
    return {k: metrics[k] for k in keep if k in metrics and metrics[k] is not None}


def run_ablation(cfg: AblateConfig, *, config_dir: Path, augment_fn: Callable[..., list[Path]] | None = None,
                 log: Log = print) -> Path:
    """Run (or resume) every arm, then write the report; returns report.md's path.

    Args:
        cfg: the validated ablation config.
        config_dir: the folder relative paths in ``cfg`` are resolved against.
        augment_fn: makes (or finds in the cache) the augmented snapshots; default
            :func:`augscale.experiment.augment.augmented_snapshots`.
    """
    from augscale.evaluate.report import load_results, write_report
    from augscale.train.model_init import init_from_config

    from augscale.train.driver import init_ray

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    task = cfg.task.build()
    start = time.monotonic()
    snapshot = resolve_snapshot(task, snapshot=cfg.data.snapshot, data_dir=cfg.data.data_dir,
                                cache_dir=cfg.data.cache_dir)
    base = load_train_base(cfg, config_dir)
    import ray

    if not ray.is_initialized():  # one Ray instance for augmentation, training and evaluation
        init_ray(base.scaling.num_workers * base.scaling.cpus_per_worker)
    pool = original_pool(snapshot, cfg.original_size, cfg.arms.seeds[0], out)
    n0 = pool.manifest["rows"]["train"]
    log(f"task {task.name}: snapshot {snapshot.version}; original pool {n0:,} rows ({pool.path})")

    if base.model.init is not None:
        model_dir = out / "model"
        init = base.model.init.model_copy(update={"data": base.model.init.data.model_copy(
            update={"snapshot": str(pool.path)})})
        built_with = model_dir / "augscale_init.json"
        wanted = json.dumps(init.model_dump(mode="json"), sort_keys=True)
        if (model_dir / "config.json").is_file():
            if built_with.is_file() and built_with.read_text() != wanted:
                raise AugscaleError(f"{model_dir} was built from another model.init; give the experiment a new "
                                    f"out_dir, or delete {model_dir} and {out / 'arms'} to start over.")
        else:
            log(f"building the initial model from model.init into {model_dir}")
            init_from_config(init, out_dir=model_dir)
            built_with.write_text(wanted)
        model_path = str(model_dir)
    else:
        model_path = base.model.path

    sizes = arm_sizes(cfg.arms.sizes, n0, cfg.arms.sizes_are_multiples)
    arms = enumerate_arms(sizes=sizes, original_size=n0, strategies=cfg.arms.strategies,
                          curricula=cfg.arms.curricula, seeds=cfg.arms.seeds)
    needs_aug = any(a.strategy != "original" for a in arms)
    aug_paths: list[Path] = []
    if needs_aug:
        if augment_fn is None:
            from augscale.experiment.augment import augmented_snapshots as augment_fn
        aug_paths = augment_fn(cfg, task=task, seed_snapshot=snapshot, pool=pool, config_dir=config_dir, log=log)
    augmented = pool_augmented(aug_paths, pool, out)
    if augmented is not None:
        counts = pl.read_parquet(augmented).group_by("source").len()
        log("augmented rows with a parent in the pool: "
            + ", ".join(f"{s} {n:,}" for s, n in counts.iter_rows()))
    generation = generation_usage(aug_paths)
    steps = cfg.budget.steps or steps_for(n0, base)

    model_settings = base.model.model_dump(mode="json")
    for i, arm in enumerate(arms, 1):
        arm_dir = out / "arms" / arm.name
        train_cfg = arm_train_config(base, arm, pool=pool, augmented=augmented, model_path=model_path,
                                     budget_mode=cfg.budget.mode, epochs=cfg.budget.epochs, steps=steps,
                                     arm_dir=arm_dir)
        settings = arm_settings(train_cfg, cfg.eval, aug_paths, model_settings)
        if check_reusable(arm_dir, settings):
            log(f"[{i}/{len(arms)}] {arm.name}: finished earlier, reused")
            continue
        log(f"[{i}/{len(arms)}] {arm.name}")
        run_arm(task, arm, train_cfg, eval_snapshot=snapshot, eval_cfg=cfg.eval, arm_dir=arm_dir,
                n_original=n0, log=log, generation=generation, settings=settings)

    results, items = load_results(out)
    metrics = [m for m in ("accuracy", "format_validity", "reference_loss", "mean_output_tokens")
               if any(m in r["metrics"] for r in results)]
    headline = cfg.headline
    budget_text = (f"{cfg.budget.epochs} epoch(s) per arm" if cfg.budget.mode == "epochs"
                   else f"{steps} optimizer steps per arm")
    context = {
        "task": task.name, "seed_snapshot": f"{snapshot.version} ({snapshot.path})",
        "augmented": f"`{augmented}`" if augmented else "none", "model": model_path,
        "budget_mode": cfg.budget.mode, "budget_text": budget_text, "eval_split": cfg.eval.split,
        "eval_n": results[0]["metrics"].get("n") if results else "?",
        "notes": f"Wall time of this invocation: {time.monotonic() - start:,.0f} s.",
        "generation": {"tokens": sum(u["tokens"] for u in generation.values()),
                       "cost_usd": round(sum(u["cost_usd"] for u in generation.values()), 6)},
    }
    _write_json(out / "context.json", context)
    return write_report(out, results, items, metrics=metrics, headline=headline, original_size=n0, context=context)


def report_only(run_dir: Path) -> Path:
    """Rebuild the report of a run folder from its finished arms (``augscale report``)."""
    from augscale.evaluate.report import load_results, write_report

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise AugscaleError(f"{run_dir}: not an ablation run folder (no config.yaml; `augscale ablate` writes one "
                            "in its out_dir)")
    cfg = load_config(run_dir / "config.yaml", AblateConfig)
    results, items = load_results(run_dir)
    if not results:
        raise AugscaleError(f"{run_dir}: no finished arms (arms/*/result.json) to report on")
    n0 = next((r["n_train"] for r in results if r.get("baseline")), results[0]["n_original"])
    metrics = [m for m in ("accuracy", "format_validity", "reference_loss", "mean_output_tokens")
               if any(m in r["metrics"] for r in results)]
    context_file = run_dir / "context.json"
    context = json.loads(context_file.read_text()) if context_file.is_file() else {
        "task": cfg.task.name, "budget_mode": cfg.budget.mode, "eval_split": cfg.eval.split}
    context["eval_n"] = results[0]["metrics"].get("n")
    context["notes"] = f"Report rebuilt by `augscale report` from {len(results)} finished arm(s)."
    return write_report(run_dir, results, items, metrics=metrics, headline=cfg.headline, original_size=n0,
                        context=context)
