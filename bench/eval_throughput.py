"""Generated tokens per second: batched generation vs one prompt at a time, same model, same prompts.

    python bench/eval_throughput.py [--model PATH] [--prompts 32] [--batch-size 16] [--max-new-tokens 64]

Without ``--model`` it builds the small model of ``configs/model/tiny.yaml`` (a 2-layer,
128-wide Llama with a byte-level BPE trained on gsm8k text) in a temporary folder.
The prompts are the first gsm8k test questions in the special-token format.

Fair comparison: both runs call the same :func:`augscale.llm.hf.generate` on the same
prompts with ``min_new_tokens = max_new_tokens``, so every prompt yields exactly
``max_new_tokens`` tokens in both (no early stop for either). One warm-up call precedes the
timings, and the two are timed chunk by chunk in turn so that other load on the machine
affects both alike. The last line is one JSON object:
``{"batched_tokens_per_s", "single_tokens_per_s", "speedup"}``.
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
START_Q, END_Q, START_A, END_A = "<START_Q>", "<END_Q>", "<START_A>", "<END_A>"


def gsm8k_rows(data_dir: Path, split: str) -> list[dict]:
    path = data_dir / "gsm8k" / f"{split}.jsonl"
    if not path.is_file():
        sys.exit(f"{path}: not found; pass --data-dir (the folder holding gsm8k/{split}.jsonl)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_model(data_dir: Path, out: Path) -> Path:
    from augscale.train.model_init import init_small_model

    texts = [f"{START_Q}{r['question']}{END_Q}{START_A}{r['answer']}{END_A}" for r in gsm8k_rows(data_dir, "train")]
    return init_small_model(texts, [START_Q, END_Q, START_A, END_A], out, end_token=END_A, vocab_size=8000,
                            hidden_size=128, num_layers=2, num_heads=4, max_position_embeddings=512,
                            tokenizer_max_texts=3000)


def timed(fn) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint folder or Hub id (default: build the tiny model)")
    ap.add_argument("--data-dir", default=os.environ.get("AUGSCALE_DATA_DIR", str(REPO.parent / "shared" / "datasets")),
                    help="folder with gsm8k/train.jsonl and gsm8k/test.jsonl")
    ap.add_argument("--prompts", type=int, default=32, help="number of prompts")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per batched call")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per prompt (fixed)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 is steadier on a machine shared with other jobs)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from augscale.llm.hf import generate, load_model

    data_dir = Path(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or build_model(data_dir, Path(tmp) / "tiny")
        model, tok = load_model(model_path, device=args.device, dtype=args.dtype)
        prompts = [f"{START_Q}{r['question']}{END_Q}{START_A}" for r in gsm8k_rows(data_dir, "test")[:args.prompts]]
        settings = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, stop_tokens=[END_A])
        generate(model, tok, prompts[:2], **settings)  # warm-up

        # Interleaved chunk by chunk (a batch, then the same prompts one at a time), so that a
        # change in machine load during the run hits both ways alike.
        t_batch = t_single = 0.0
        out_b: list = []
        out_s: list = []
        for i in range(0, len(prompts), args.batch_size):
            chunk = prompts[i:i + args.batch_size]
            t, out = timed(lambda: generate(model, tok, chunk, **settings))
            t_batch, out_b = t_batch + t, out_b + out
            t, out = timed(lambda: [generate(model, tok, [p], **settings)[0] for p in chunk])
            t_single, out_s = t_single + t, out_s + out
        tokens_b = sum(s[0]["output_tokens"] for s in out_b)
        tokens_s = sum(s[0]["output_tokens"] for s in out_s)
        assert tokens_b == tokens_s == len(prompts) * args.max_new_tokens, (tokens_b, tokens_s)
        same = sum(b[0]["prediction"] == s[0]["prediction"] for b, s in zip(out_b, out_s))
        params = sum(p.numel() for p in model.parameters())
        print(f"model {model_path} ({params / 1e6:.2f}M parameters) on {model.device}, {model.dtype}, "
              f"torch threads {torch.get_num_threads()}", file=sys.stderr)
        print(f"{len(prompts)} prompts x {args.max_new_tokens} new tokens (fixed length); batch size "
              f"{args.batch_size}", file=sys.stderr)
        print(f"batched: {tokens_b} tokens in {t_batch:.2f} s; one at a time: {tokens_s} tokens in {t_single:.2f} s; "
              f"identical greedy outputs: {same}/{len(prompts)}", file=sys.stderr)
        b, s = tokens_b / t_batch, tokens_s / t_single
        print(json.dumps({"batched_tokens_per_s": round(b, 1), "single_tokens_per_s": round(s, 1),
                          "speedup": round(b / s, 2)}))


if __name__ == "__main__":
    main()
