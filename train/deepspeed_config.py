"""The DeepSpeed config for full fine-tuning: ZeRO stage 2 or 3, CPU offload, bf16 or fp32.

Precision follows the hardware unless set: bf16 on GPUs (DeepSpeed keeps fp32 master
weights in the optimizer), fp32 on CPU (gloo, no mixed precision there).
"""

from __future__ import annotations

from typing import Any


def resolve_precision(precision: str, use_gpu: bool) -> str:
    """``auto`` -> ``bf16`` on GPU, ``fp32`` on CPU; ``bf16`` without a GPU is refused.

    Raises:
        ValueError: bf16 asked for on CPU workers.
    """
    if precision == "auto":
        return "bf16" if use_gpu else "fp32"
    if precision == "bf16" and not use_gpu:
        raise ValueError("deepspeed.precision bf16 needs GPU workers; on CPU use precision: fp32 (or auto)")
    return precision


def build_ds_config(*, zero_stage: int, micro_batch_size: int, grad_accum: int, world_size: int,
                    precision: str, clip_grad_norm: float | None, offload_optimizer: bool = False,
                    offload_params: bool = False, use_gpu: bool = False) -> dict[str, Any]:
    """A DeepSpeed config dict (the optimizer and scheduler are passed to ``initialize`` directly).

    ``micro_batch_size`` is examples per micro-batch per worker; DeepSpeed only uses it for
    bookkeeping here, since batches come from Ray Data, not from a DeepSpeed data loader.

    Raises:
        ValueError: parameter offload without ZeRO-3, or an unknown precision.
    """
    if offload_params and zero_stage != 3:
        raise ValueError("offload_params needs zero_stage 3; set zero_stage=3 or offload_params=False")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision {precision!r}: allowed values are bf16, fp32")
    zero: dict[str, Any] = {
        "stage": zero_stage,
        "contiguous_gradients": True,
        "overlap_comm": use_gpu,  # overlap needs CUDA streams
        "reduce_bucket_size": 5e7,
    }
    if zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": 5e7,
            "stage3_param_persistence_threshold": 1e5,
            # the HF checkpoint is saved from the gathered full weights
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_size * grad_accum * world_size,
        "bf16": {"enabled": precision == "bf16"},
        "zero_optimization": zero,
        # a torch AdamW (or DeepSpeed's CPU Adam when offloading) is passed in, not built from here
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if clip_grad_norm:
        config["gradient_clipping"] = clip_grad_norm
    return config
