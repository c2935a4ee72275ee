"""The training loop: forward, loss, backward, step, log. Plain PyTorch + DeepSpeed, no Ray.

The Ray Train worker (:mod:`augscale.train.driver`) calls :func:`train`; unit tests,
``bench/train_throughput.py`` and ``bench/gpu_mfu.py`` call it directly, single process.
Batches are dicts from :func:`augscale.train.batching.micro_batches`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


@dataclass
class LoopState:
    """Where training is: saved in each checkpoint, restored on resume."""

    epoch: int = 0           # epochs completed
    step: int = 0            # optimizer steps taken
    tokens: int = 0          # real tokens trained on, all workers
    loss_tokens: int = 0     # tokens the loss was computed on, all workers
    seconds: float = 0.0     # time inside the loop (steps and evaluation)
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, decay: str = "cosine",
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step``: linear warmup, then the decay."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress
    return min_lr_ratio + (1 - min_lr_ratio) * shape


def make_optimizer(model, *, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8,
                   offload: bool = False):
    """AdamW without decay on biases and norms; DeepSpeed's CPU Adam when the state is offloaded."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=lr, betas=tuple(betas), eps=eps, adamw_mode=True)
    fused = torch.cuda.is_available() and next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def make_engine(model, *, ds_config: dict, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999),
                eps: float = 1e-8, total_steps: int, warmup_steps: int = 0, decay: str = "cosine",
                min_lr_ratio: float = 0.0):
    """``deepspeed.initialize`` with AdamW and the warmup + decay schedule (stepped by DeepSpeed)."""
    import deepspeed

    offload = "offload_optimizer" in ds_config.get("zero_optimization", {})
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, offload=offload)

    def schedule(opt):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(
            s, total_steps=total_steps, warmup_steps=warmup_steps, decay=decay, min_lr_ratio=min_lr_ratio))

    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule, config=ds_config)
    return engine


def init_single_process(backend: str | None = None) -> bool:
    """A world of one, for running the loop without a launcher (tests, benchmarks).

    Returns:
        True when this call created the process group (the caller may destroy it).
    """
    if torch.distributed.is_initialized():
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    os.environ.setdefault("LOCAL_RANK", "0")  # DeepSpeed reads it; launchers (Ray Train too) set their own
    # an in-memory store: no port to find
    torch.distributed.init_process_group(backend=backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
    return True


def _all_sum(values: list[float], device) -> list[float]:
    """Sum of each value over the workers (one small all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


def evaluate(engine, batches: Iterable[dict]) -> dict[str, float]:
    """Token-weighted mean loss and perplexity over every worker's batches."""
    engine.eval()
    loss_sum, n = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            out = engine(**{k: batch[k].to(engine.device) for k in MODEL_INPUTS})
            k = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels by one
            loss_sum, n = loss_sum + float(out.loss) * k, n + k
    engine.train()
    loss_sum, n = _all_sum([loss_sum, n], engine.device)
    loss = loss_sum / max(n, 1)
    return {"valid_loss": loss, "valid_perplexity": math.exp(min(loss, 50.0)), "valid_tokens": int(n)}


def train(engine, epoch_batches: Callable[[int], Iterable[dict]], *, state: LoopState, epochs: int,
          steps_per_epoch: int, grad_accum: int = 1, max_steps: int | None = None,
          valid_batches: Callable[[], Iterable[dict]] | None = None,
          log: Callable[[dict], None] = lambda m: None,
          end_epoch: Callable[[LoopState, dict], None] = lambda s, m: None) -> LoopState:
    """Train from ``state`` to ``epochs`` (or ``max_steps`` optimizer steps).

    Each epoch runs ``steps_per_epoch * grad_accum`` micro-batches from ``epoch_batches(epoch)``
    (a tail that cannot fill an optimizer step is read and skipped, the same on every worker),
    logs one line per optimizer step, evaluates ``valid_batches()`` and calls ``end_epoch``
    (checkpoint and report). Stopping at ``max_steps`` ends the epoch early the same way.
    """
    max_steps = max_steps or epochs * steps_per_epoch
    engine.train()
    for epoch in range(state.epoch, epochs):
        if state.step >= max_steps:
            break
        micro_limit = steps_per_epoch * grad_accum
        started = t0 = time.perf_counter()
        sums = [0.0, 0, 0, 0, 0]  # loss*label_tokens, label_tokens, real tokens, computed tokens, truncated
        for micro, batch in enumerate(epoch_batches(epoch)):
            if state.step >= max_steps:
                break  # every worker stops at the same step
            if micro >= micro_limit:
                continue  # keep reading: every worker drains the same stream
            inputs = {k: batch[k].to(engine.device) for k in MODEL_INPUTS}
            lr = engine.get_lr()[0]
            out = engine(**inputs)                       # (B, T) -> mean loss over label tokens
            engine.backward(out.loss)
            engine.step()                                # optimizer step at accumulation boundaries
            k = int((batch["labels"][:, 1:] != -100).sum())
            sums = [sums[0] + float(out.loss.detach()) * k, sums[1] + k, sums[2] + int(batch["attention_mask"].sum()),
                    sums[3] + batch["input_ids"].numel(), sums[4] + int(batch.get("truncated", 0))]
            if (micro + 1) % grad_accum:
                continue
            loss_sum, n, real, computed, truncated = _all_sum(sums, engine.device)
            now = time.perf_counter()
            state.step += 1
            state.tokens += int(real)
            state.loss_tokens += int(n)
            log({"step": state.step, "epoch": epoch + 1, "loss": loss_sum / max(n, 1), "lr": lr,
                 "grad_norm": _grad_norm(engine), "tokens": int(real),
                 "tokens_per_s": real / max(now - t0, 1e-9), "real_token_share": real / max(computed, 1),
                 "truncated": int(truncated)})
            sums, t0 = [0.0, 0, 0, 0, 0], now
        metrics = evaluate(engine, valid_batches()) if valid_batches is not None else {}
        state.seconds += time.perf_counter() - started
        state.epoch = epoch + 1
        metrics = {"epoch": state.epoch, "step": state.step, "train_tokens": state.tokens,
                   "train_seconds": state.seconds, **metrics}
        state.history.append(metrics)
        end_epoch(state, metrics)
    return state


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    return float(norm) if norm is not None else None
