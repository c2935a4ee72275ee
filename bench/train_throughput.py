"""Training throughput: augscale's batching vs padding to 512 vs a plain PyTorch loop.

    python bench/train_throughput.py [--rows 2048] [--micro-batch 16] [--window 1024] [--pad-steps 40]

Same small model (a 2-layer, 64-wide Llama with a 2k-token BPE trained on gsm8k text, as in
configs/train/gsm8k_tiny.yaml) and the same gsm8k rows (a random-order mixture) for all three:

(a) augscale: ``run_training`` -- Ray Data tokenizes and streams, one Ray Train CPU worker runs
    DeepSpeed ZeRO-2 in fp32; micro-batches grouped by length inside windows.
(b) the same, every example padded to 512 tokens (the Ray fine-tuning template's way);
    ``--pad-steps`` optimizer steps suffice for its steady rate.
(c) a plain single-process PyTorch loop (torch AdamW, no Ray, no DeepSpeed) over the very
    micro-batches (a) trains on (same tokenizer, same windows, same grouping).

Every run uses one CPU thread (a one-CPU Ray worker's setting; several threads crawl on a
shared 2-core machine). Rates are real (non-pad) tokens per second over the steps of an epoch
(the first step of each epoch, which waits for Ray Data to start, is left out, as is the
warm-up step of (c)); start-up, evaluation and checkpoints are not part of a rate.
The last line is one JSON object: ``{"real_token_share", "speedup_vs_pad512", "ratio_vs_plain_loop"}``
(targets: share >= 0.95, speedup >= 2.5, ratio >= 0.85).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def steady_rate(metrics_path: Path) -> tuple[float, float, int]:
    """(real tokens/s, real-token share, steps) over the step lines of metrics.jsonl, first step of each epoch out."""
    lines = [json.loads(x) for x in metrics_path.read_text().splitlines()]
    steps = [m for m in lines if "loss" in m and "event" not in m]
    firsts = {min(s["step"] for s in steps if s["epoch"] == e) for e in {s["epoch"] for s in steps}}
    steady = [s for s in steps if s["step"] not in firsts]
    real = sum(s["tokens"] for s in steady)
    seconds = sum(s["tokens"] / s["tokens_per_s"] for s in steady)
    computed = sum(s["tokens"] / s["real_token_share"] for s in steady)
    return real / seconds, real / computed, len(steady)


def plain_loop_rate(model_path: Path, train_path: Path, *, micro_batch: int, window: int, lr: float) -> float:
    """(c): the same micro-batches as (a), trained by a bare PyTorch loop."""
    import polars as pl
    import torch

    from augscale.tasks import get_task
    from augscale.train.batching import micro_batches, table_windows, tokenize_records
    from augscale.train.model import load_model, load_tokenizer

    task = get_task("gsm8k")
    tokenizer = load_tokenizer(model_path, task.tokens.all())
    rows = pl.read_parquet(train_path)
    cols = tokenize_records(tokenizer, task, rows.to_dicts(), max_seq_len=512)
    cols["order"] = rows["order"].to_numpy()
    batches = list(micro_batches(table_windows(cols, window), micro_batch_size=micro_batch,
                                 pad_id=tokenizer.pad_token_id))
    torch.manual_seed(0)
    model = load_model(model_path, tokenizer, end_token=task.tokens.end_a)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    real, seconds = 0, 0.0
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            seconds += time.perf_counter() - t0
            real += int(batch["attention_mask"].sum())
    return real / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AUGSCALE_DATA_DIR", REPO.parent / "shared"
                                                                         / "datasets")))
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--pad-steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()

    import torch

    from augscale.datasets_cache import prepare
    from augscale.tasks import get_task
    from augscale.train.driver import init_ray, run_training
    from augscale.train.mixture import build_mixture, write_mixture
    from augscale.train.model_init import init_small_model

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    task = get_task("gsm8k")
    snap, _ = prepare(task, data_dir=args.data_dir, cache_dir=work / "cache")
    texts = [task.train_text(r) for r in snap.scan("train").head(3000).collect().to_dicts()]
    model = init_small_model(texts, task.tokens.all(), work / "model", end_token=task.tokens.end_a, vocab_size=2000,
                             hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=512)
    train_path = write_mixture(build_mixture(snap.path, size=args.rows, seed=0), work / "train.parquet",
                               curriculum="random", seed=0)
    init_ray(1)
    common = dict(model_path=str(model), train_path=str(train_path), valid_path=None, num_workers=1,
                  cpus_per_worker=1, zero_stage=2, micro_batch_size=args.micro_batch, window=args.window,
                  max_seq_len=512, lr=args.lr, warmup_steps=2, progress=False, use_gpu=False)
    rates = {}
    for name, extra in (("grouped", {"epochs": 1}), ("padded", {"max_steps": args.pad_steps})):
        t0 = time.time()
        summary = run_training(out_dir=str(work / "runs" / name), batching=name, **common, **extra)
        rates[name] = steady_rate(Path(summary["metrics"]))
        print(f"({'a' if name == 'grouped' else 'b'}) {name:<8} {rates[name][0]:>9,.0f} real tokens/s, "
              f"real-token share {rates[name][1]:.3f} over {rates[name][2]} steps; run wall {time.time() - t0:.0f} s",
              file=sys.stderr)
    plain = plain_loop_rate(model, train_path, micro_batch=args.micro_batch, window=args.window, lr=args.lr)
    print(f"(c) plain    {plain:>9,.0f} real tokens/s (same batches as (a), bare PyTorch)", file=sys.stderr)
    result = {"real_token_share": round(rates["grouped"][1], 4),
              "speedup_vs_pad512": round(rates["grouped"][0] / rates["padded"][0], 3),
              "ratio_vs_plain_loop": round(rates["grouped"][0] / plain, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
