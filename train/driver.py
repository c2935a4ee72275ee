"""The Ray Train driver: Ray Data streams tokenized rows into TorchTrainer workers running DeepSpeed.

:func:`run_training` takes plain arguments and returns the run summary. Each worker runs
:func:`train_worker`, which builds the model and engine, resumes from the last reported
checkpoint when Ray Train restarted it, and calls the plain loop (:func:`augscale.train.loop.train`).
The driver never reads the training rows: Ray Data reads, tokenizes and shards them.

The run folder (``out_dir``) is Ray Train's storage for the run: checkpoints ``epoch_NNN/``
(HF format + DeepSpeed state), ``metrics.jsonl`` (written by rank 0; on a multi-node
cluster ``out_dir`` must be shared storage, as Ray Train requires for a local path),
``manifest.json`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from augscale.errors import AugscaleError
from augscale.train.batching import count_micro_batches

METRICS_FILE, SUMMARY_FILE = "metrics.jsonl", "summary.json"


class TrainingError(AugscaleError, RuntimeError):
    """A training run that failed or cannot start; the message says why."""


# ---------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------
class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` and drives the console progress bar."""

    def __init__(self, path: Path | None, *, total_steps: int, progress: bool, in_ray: bool = True):
        self.path, self.bar = path, None
        if progress:
            if in_ray:
                from ray.experimental.tqdm_ray import tqdm
            else:
                from tqdm import tqdm
            self.bar = tqdm(total=total_steps, desc="train")

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"time": round(time.time(), 3), **record}, default=float) + "\n")

    def step(self, metrics: dict[str, Any]) -> None:
        self.write(metrics)
        if self.bar is not None:
            self.bar.n = metrics["step"]
            self.bar.set_description(f"train loss {metrics['loss']:.3f}")
            self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_engine(args: dict[str, Any], world_size: int):
    """Tokenizer and DeepSpeed engine for one worker (every rank calls it; collective under ZeRO-3)."""
    import deepspeed
    import torch

    from augscale.train.deepspeed_config import build_ds_config
    from augscale.train.loop import make_engine
    from augscale.train.model import load_model, load_tokenizer

    torch.manual_seed(args["seed"])
    tokenizer = load_tokenizer(args["model_path"], args["special_tokens"])
    ds_config = build_ds_config(
        zero_stage=args["zero_stage"], micro_batch_size=args["micro_batch_size"], grad_accum=args["grad_accum"],
        world_size=world_size, precision=args["precision"], clip_grad_norm=args["clip_grad_norm"],
        offload_optimizer=args["offload_optimizer"], offload_params=args["offload_params"], use_gpu=args["use_gpu"])
    deepspeed.init_distributed(dist_backend="nccl" if args["use_gpu"] else "gloo")  # joins Ray Train's group
    hf_zero3 = None
    if args["zero_stage"] == 3:  # partition the weights as they load (held until deepspeed.initialize)
        from transformers.integrations import HfDeepSpeedConfig

        hf_zero3 = HfDeepSpeedConfig(ds_config)
    model = load_model(args["model_path"], tokenizer, end_token=args["end_token"], dtype=args["precision"],
                       attn_implementation=args["attn_implementation"], zero3=hf_zero3 is not None)
    if args["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    engine = make_engine(model, ds_config=ds_config, lr=args["lr"], weight_decay=args["weight_decay"],
                         betas=args["betas"], eps=args["eps"], total_steps=args["total_steps"],
                         warmup_steps=args["warmup_steps"], decay=args["decay"], min_lr_ratio=args["min_lr_ratio"])
    return tokenizer, engine


def train_worker(args: dict[str, Any]) -> None:
    """One Ray Train worker: engine, resume from the last checkpoint if restarted, then the plain loop.

    ``args`` holds plain values only (see :func:`run_training`); the worker reads nothing else.
    """
    import ray
    import ray.train
    import torch
    from ray.train import Checkpoint

    from augscale.train.batching import micro_batches
    from augscale.train.checkpoint import load_checkpoint, save_checkpoint
    from augscale.train.loop import LoopState, train

    warnings.filterwarnings("ignore", category=FutureWarning)  # DeepSpeed's calls of deprecated torch APIs
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    tokenizer, engine = build_engine(args, world)

    state, resumed_from = LoopState(), ray.train.get_checkpoint()
    if resumed_from is not None:  # Ray Train restarted us: model, optimizer, schedule and position
        with resumed_from.as_directory() as folder:
            state = load_checkpoint(folder, engine)
    log = MetricsLog(Path(args["run_dir"]) / METRICS_FILE if rank == 0 else None,
                     total_steps=args["total_steps"], progress=args["progress"] and rank == 0)
    nodes = [None] * world  # where each rank runs: evidence that nothing assumes one node
    torch.distributed.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    log.write({"event": "start" if resumed_from is None else "resume", "world_size": world, "nodes": nodes,
               "epoch": state.epoch, "step": state.step, "checkpoint": getattr(resumed_from, "path", None)})

    def batches(name: str):
        shard = ray.train.get_dataset_shard(name)  # this worker's part of the stream, in order
        windows = shard.iter_batches(batch_size=args["window"], batch_format="numpy", prefetch_batches=2)
        return micro_batches(windows, micro_batch_size=args["micro_batch_size"], pad_id=tokenizer.pad_token_id,
                             strategy=args["batching"], max_seq_len=args["max_seq_len"])

    def end_epoch(state: LoopState, metrics: dict[str, Any]) -> None:
        log.write({"event": "epoch", **metrics})
        local = Path(tempfile.mkdtemp(prefix=f"ckpt-rank{rank}-"))  # this rank's part; Ray merges the parts
        try:
            save_checkpoint(local, engine, tokenizer, state, rank=rank)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(local)),
                             checkpoint_dir_name=f"epoch_{state.epoch:03d}")
        finally:
            shutil.rmtree(local, ignore_errors=True)

    train(engine, lambda epoch: batches("train"), state=state, epochs=args["epochs"],
          steps_per_epoch=args["steps_per_epoch"], grad_accum=args["grad_accum"], max_steps=args["max_steps"],
          valid_batches=(lambda: batches("valid")) if args["has_valid"] else None,
          log=log.step, end_epoch=end_epoch)
    log.close()


# ---------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------
def plan_steps(*, n_train: int, num_workers: int, window: int, micro_batch_size: int, grad_accum: int,
               epochs: int, max_steps: int | None) -> dict[str, int]:
    """Optimizer steps per epoch and in total, from the row count (every worker gets n // workers rows).

    Raises:
        TrainingError: too few rows for one optimizer step.
    """
    rows = n_train // num_workers
    micro = count_micro_batches(rows, window, micro_batch_size)
    steps_per_epoch = micro // grad_accum
    if steps_per_epoch < 1:
        raise TrainingError(
            f"{n_train} training rows make {micro} micro-batch(es) per worker across {num_workers} workers, fewer "
            f"than grad_accum={grad_accum}: no optimizer step. Use more rows, fewer workers or a smaller grad_accum.")
    if max_steps:
        epochs = math.ceil(max_steps / steps_per_epoch)
    total = max_steps or epochs * steps_per_epoch
    return {"rows_per_worker": rows, "micro_batches_per_epoch": micro, "steps_per_epoch": steps_per_epoch,
            "epochs": epochs, "total_steps": total}


def parquet_rows(path: str | Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(str(path)).metadata.num_rows


def run_training(*, model_path: str, train_path: str, valid_path: str | None, out_dir: str,
                 task_name: str = "gsm8k", task_params: dict | None = None, special_tokens: list[str] | None = None,
                 end_token: str | None = None, attn_implementation: str = "sdpa", gradient_checkpointing: bool = False,
                 loss_on: str = "answer", batching: str = "grouped", micro_batch_size: int = 16, window: int = 1024,
                 max_seq_len: int = 512, lr: float = 2e-5, weight_decay: float = 0.0, betas=(0.9, 0.999),
                 eps: float = 1e-8, warmup_steps: int | None = None, warmup_ratio: float = 0.03,
                 decay: str = "cosine", min_lr_ratio: float = 0.0, epochs: int = 1, max_steps: int | None = None,
                 grad_accum: int = 1, clip_grad_norm: float | None = 1.0, zero_stage: int = 3,
                 offload_optimizer: bool = False, offload_params: bool = False, precision: str = "auto",
                 num_workers: int = 2, use_gpu: bool | str = "auto", cpus_per_worker: float = 1,
                 gpus_per_worker: float = 1, placement_strategy: str = "PACK", keep_checkpoints: int | None = None,
                 max_failures: int = 2, seed: int = 0, progress: bool = True,
                 manifest: dict | None = None) -> dict[str, Any]:
    """Fine-tune ``model_path`` on the rows of ``train_path`` (in their order) with Ray Train + DeepSpeed.

    Returns:
        The summary: ``final`` and ``best`` checkpoint folders, ``metrics`` (metrics.jsonl),
        ``train_tokens``, ``train_seconds``, ``optimizer_steps``, per-epoch validation, ...

    Raises:
        TrainingError: the run failed after its retries, or cannot start (too few rows, bf16 on CPU).
        ModelLoadError: no tokenizer at ``model_path``.
    """
    import ray
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from augscale.tasks import get_task
    from augscale.train.batching import token_dataset
    from augscale.train.deepspeed_config import resolve_precision
    from augscale.train.model import load_tokenizer

    started = time.time()
    run_dir = Path(out_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    task = get_task(task_name, **(task_params or {}))
    special_tokens = special_tokens or task.tokens.all()
    # the tokenizer the workers will build (special tokens added); a wrong model id fails here, once
    tokenizer_json = load_tokenizer(model_path, special_tokens).backend_tokenizer.to_str()
    if not ray.is_initialized():
        init_ray(num_workers * cpus_per_worker)
    if use_gpu == "auto":
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    try:
        precision = resolve_precision(precision, bool(use_gpu))
    except ValueError as e:
        raise TrainingError(str(e)) from None
    n_train = parquet_rows(train_path)
    plan = plan_steps(n_train=n_train, num_workers=num_workers, window=window, micro_batch_size=micro_batch_size,
                      grad_accum=grad_accum, epochs=epochs, max_steps=max_steps)
    warmup = warmup_steps if warmup_steps is not None else round(warmup_ratio * plan["total_steps"])
    args = {
        "model_path": str(model_path), "special_tokens": special_tokens, "end_token": end_token or task.tokens.end_a,
        "attn_implementation": attn_implementation, "gradient_checkpointing": gradient_checkpointing,
        "batching": batching, "micro_batch_size": micro_batch_size, "window": window, "max_seq_len": max_seq_len,
        "lr": lr, "weight_decay": weight_decay, "betas": tuple(betas), "eps": eps, "warmup_steps": warmup,
        "decay": decay, "min_lr_ratio": min_lr_ratio, "epochs": plan["epochs"], "max_steps": max_steps,
        "steps_per_epoch": plan["steps_per_epoch"], "total_steps": plan["total_steps"], "grad_accum": grad_accum,
        "clip_grad_norm": clip_grad_norm, "zero_stage": zero_stage, "offload_optimizer": offload_optimizer,
        "offload_params": offload_params, "precision": precision, "use_gpu": bool(use_gpu), "seed": seed,
        "progress": progress, "run_dir": str(run_dir), "has_valid": valid_path is not None,
    }
    tokenize = {"tokenizer_json": tokenizer_json, "task_name": task_name, "task_params": task_params,
                "max_seq_len": max_seq_len, "loss_on": loss_on}
    key = run_key(args, tokenize, train_path, valid_path)
    finished = check_run_dir(run_dir, key)
    if finished is not None:
        return finished
    manifest = {**(manifest or {}), "run_key": key, "plan": {
        **plan, "warmup_steps": warmup, "num_workers": num_workers, "use_gpu": bool(use_gpu), "precision": precision,
        "n_train": n_train}}
    write_json(run_dir / "manifest.json", {**manifest, **run_environment()})

    datasets = {"train": token_dataset(str(train_path), **tokenize)}
    if valid_path is not None:
        # small and read every epoch: tokenized once into the object store (not the driver's memory)
        datasets["valid"] = token_dataset(str(valid_path), **tokenize).materialize()
    env = {"TOKENIZERS_PARALLELISM": "false"}
    if not use_gpu:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed would otherwise look for CUDA
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        train_worker, train_loop_config=args,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=bool(use_gpu), resources_per_worker=resources,
                                     placement_strategy=placement_strategy),
        run_config=RunConfig(
            # an existing run folder with the same settings resumes from its last checkpoint
            name=run_dir.name, storage_path=str(run_dir.parent), worker_runtime_env={"env_vars": env},
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints, checkpoint_score_attribute=(
                "valid_loss" if valid_path is not None else None), checkpoint_score_order="min")),
        datasets=datasets,
        # the curriculum order is the file order: keep it through the stream
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise TrainingError(f"training failed after {max_failures} retries: {e}") from e
    summary = {**summarize(result, run_dir, has_valid=valid_path is not None), "run_key": key,
               "wall_seconds": round(time.time() - started, 1), "n_train": n_train, **manifest.get("mixture", {})}
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def summarize(result, run_dir: Path, *, has_valid: bool) -> dict[str, Any]:
    """The run summary from Ray Train's result: checkpoints, steps, tokens, validation.

    Raises:
        TrainingError: no checkpoint was ever reported.
    """
    if result.checkpoint is None:
        raise TrainingError(f"training reported no checkpoint; see {run_dir / METRICS_FILE}")
    best = result.get_best_checkpoint("valid_loss", "min") if has_valid else None
    last = result.metrics or {}
    summary = {
        "run_dir": str(run_dir), "final": result.checkpoint.path, "best": (best or result.checkpoint).path,
        "metrics": str(run_dir / METRICS_FILE), "manifest": str(run_dir / "manifest.json"),
        "optimizer_steps": last.get("step"), "epochs": last.get("epoch"), "train_tokens": last.get("train_tokens"),
        "train_seconds": last.get("train_seconds"), "final_valid_loss": last.get("valid_loss"),
    }
    if best is not None:
        summary["best_valid_loss"] = min(m.get("valid_loss", math.inf) for _, m in result.best_checkpoints)
    return summary


def run_key(args: dict[str, Any], tokenize: dict[str, Any], train_path, valid_path) -> str:
    """A hash of what determines a run: its settings (not the progress bar) and its data files."""
    from augscale.datasets_cache.snapshot import content_hash, sha256_file

    settings = {k: v for k, v in args.items() if k not in ("progress", "run_dir")}
    return content_hash({"args": settings, "tokenize": tokenize, "train": sha256_file(Path(train_path)),
                         "valid": sha256_file(Path(valid_path)) if valid_path else None}, length=16)


def check_run_dir(run_dir: Path, key: str) -> dict[str, Any] | None:
    """The finished run's summary when ``run_dir`` holds this very run; None for a new or unfinished one.

    Raises:
        TrainingError: ``run_dir`` holds a run with other settings or data.
    """
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return None
    if json.loads(manifest.read_text()).get("run_key") != key:
        raise TrainingError(f"{run_dir} holds a run with other settings or data (see its manifest.json); "
                            "choose another out_dir, or delete that folder to start over")
    summary = run_dir / SUMMARY_FILE
    if summary.is_file() and json.loads(summary.read_text()).get("run_key") == key:
        return json.loads(summary.read_text())
    return None  # same run, unfinished: Ray Train resumes from its last checkpoint


def init_ray(worker_cpus: float) -> None:
    """Join the cluster at ``RAY_ADDRESS``, else start a local Ray instance.

    A local instance counts at least ``worker_cpus`` + 2 logical CPUs, so that the training
    workers and the Ray Data pipeline that feeds them fit side by side on a small machine
    (2 one-CPU workers on a 2-core laptop would otherwise starve the tokenizer).
    """
    from augscale.llm.raydata import ensure_ray

    ensure_ray(math.ceil(worker_cpus) + 2)


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def run_environment() -> dict[str, Any]:
    """Git commit and library versions, for the run manifest."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for lib in ("augscale", "torch", "transformers", "deepspeed", "ray", "polars", "tokenizers"):
        try:
            versions[lib] = version(lib)
        except PackageNotFoundError:
            versions[lib] = None
    repo = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git": {"commit": commit, "dirty": bool(dirty) if commit else None}, "versions": versions,
            "host": platform.node(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
