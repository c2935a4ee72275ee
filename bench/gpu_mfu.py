"""Model FLOPs utilization of the Ray-free training step on one GPU: DeepSpeed bf16, a ~1B Llama, sequence 2048.

    python bench/gpu_mfu.py [--micro-batch 8] [--seq 2048] [--steps 12] [--zero-stage 2] [--peak-tflops N]

The model is a random-init Llama of TinyLlama-1.1B's shape (22 layers, width 2048, 32 heads,
4 KV heads, vocab 32,000: 1.10B parameters), SDPA attention, bf16 with DeepSpeed (fp32 master
weights in the optimizer). Batches are full 2048-token rows of random token ids, so every
computed token is real. The step is :func:`augscale.train.loop.train`, exactly as the Ray
Train worker runs it, here in a world of one process (no Ray needed: this script runs where
only torch, transformers and DeepSpeed are installed, with or without augscale installed).

MFU = tokens/s x FLOPs per token / peak, with PaLM's count (appendix B):
6 x N (N = parameters in matmuls: all but the input embedding) + 12 x layers x width x seq
(attention scores and values, forward and backward), and the peak dense bf16 FLOP/s of the
GPU (H100/H200 SXM: 989 TFLOP/s; ``--peak-tflops`` for others). The first ``--warmup`` steps
are left out. The last line is one JSON object: ``{"params", "tokens_per_s", "mfu"}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0}


def load_part(name: str):
    """``augscale.train.<name>``, or the file itself when augscale is not installed (a bare GPU box)."""
    try:
        return importlib.import_module(f"augscale.train.{name}")
    except ImportError:
        spec = importlib.util.spec_from_file_location(f"_augscale_train_{name}", REPO / "train" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        return module


def peak_tflops(device_name: str) -> float | None:
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in device_name:
            return PEAK_BF16_TFLOPS[key]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--zero-stage", type=int, default=2, choices=(2, 3))
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu_mfu.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine "
                 f"(torch {torch.__version__}). Run it on a GPU machine; nothing was measured.")
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    if peak is None:
        sys.exit(f"unknown peak bf16 FLOP/s for {name!r}; pass --peak-tflops N")

    from transformers import LlamaConfig, LlamaForCausalLM

    loop = load_part("loop")
    ds_config_mod = load_part("deepspeed_config")
    loop.init_single_process("nccl")
    torch.cuda.set_device(0)
    torch.manual_seed(0)

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=args.seq,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    params = sum(p.numel() for p in model.parameters())
    matmul_params = params - config.vocab_size * config.hidden_size  # the input embedding is a lookup
    flops_per_token = 6 * matmul_params + 12 * config.num_hidden_layers * config.hidden_size * args.seq

    steps = args.warmup + args.steps
    ds_config = ds_config_mod.build_ds_config(zero_stage=args.zero_stage, micro_batch_size=args.micro_batch,
                                              grad_accum=1, world_size=1, precision="bf16", clip_grad_norm=1.0,
                                              use_gpu=True)
    engine = loop.make_engine(model, ds_config=ds_config, lr=1e-4, total_steps=steps, warmup_steps=0)

    def batches(epoch):
        for _ in range(steps):
            ids = torch.randint(0, config.vocab_size, (args.micro_batch, args.seq))
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    timings: list[tuple[int, float]] = []
    last = [time.perf_counter()]

    def log(metrics):
        torch.cuda.synchronize()  # the step's kernels are done before the clock reads
        now = time.perf_counter()
        timings.append((metrics["tokens"], now - last[0]))
        last[0] = now
        print(f"step {metrics['step']:>3}  loss {metrics['loss']:.3f}  {metrics['tokens'] / timings[-1][1]:>9,.0f} "
              f"tokens/s", file=sys.stderr)

    loop.train(engine, batches, state=loop.LoopState(), epochs=1, steps_per_epoch=steps, log=log)
    measured = timings[args.warmup:]
    tokens_per_s = sum(t for t, _ in measured) / sum(s for _, s in measured)
    mfu = tokens_per_s * flops_per_token / (peak * 1e12)
    print(f"{name}: {params / 1e9:.2f}B parameters, {tokens_per_s:,.0f} tokens/s, MFU {mfu:.3f} "
          f"(peak {peak:.0f} TFLOP/s, {flops_per_token / 1e9:.2f} GFLOP/token), "
          f"max memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", file=sys.stderr)
    print(json.dumps({"params": params, "tokens_per_s": round(tokens_per_s, 1), "mfu": round(mfu, 4)}))


if __name__ == "__main__":
    main()
