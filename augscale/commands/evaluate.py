"""``augscale evaluate``: generate with a local model or an endpoint, score, write a run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from augscale.commands.data import CACHE_DIR_HELP, DATA_DIR_HELP


def _run_name(task: str, model: Optional[str], api_model: Optional[str]) -> str:
    label = Path(model.rstrip("/")).name if model else (api_model or "endpoint")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    return f"{task}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}"


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        task: str = typer.Argument(..., help="Task name: gsm8k, viggo, sql or jsonl."),
        model: Optional[str] = typer.Option(None, "--model", help="A checkpoint folder or Hub id: batch "
                                            "generation on Ray Data with an actor pool."),
        endpoint: Optional[str] = typer.Option(None, "--endpoint", help="An OpenAI-compatible base URL "
                                               "(e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1)."),
        api_model: Optional[str] = typer.Option(None, "--api-model",
                                                help="The model the endpoint serves (e.g. gpt-4)."),
        api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env",
                                        help="Environment variable holding the endpoint's API key."),
        split: str = typer.Option("test", "--split", help="train, valid or test."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate the first N records only."),
        shots: int = typer.Option(0, "--shots", min=0, help="Solved examples per prompt, in natural language "
                                  "(for base models without the special tokens), drawn from the train split."),
        prompt_style: Optional[str] = typer.Option(None, "--prompt-style", help="tokens (our checkpoints) or "
                                                   "natural. Default: tokens for --model zero-shot, else natural."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
        temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0: greedy (the default)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Prompts per generation batch (--model)."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="Model copies for --model "
                                                  "(default 1); requests in flight for --endpoint (default 8)."),
        num_gpus: Optional[float] = typer.Option(None, "--num-gpus", min=0, help="GPUs per model copy "
                                                 "(default: 1 if the Ray cluster has GPUs, else 0)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda (auto: the GPU when there is one)."),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
        no_loss: bool = typer.Option(False, "--no-loss", help="Skip the reference answers' loss (--model)."),
        snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="A snapshot folder to read records "
                                                "from (default: the task's prepared data)."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir",
                                               help="Run folder (default runs/eval/TASK-MODEL-TIME)."),
        max_failure_rate: float = typer.Option(0.1, "--max-failure-rate", min=0.0, max=1.0,
                                               help="Fail when a larger share of generations errored."),
        seed: int = typer.Option(0, "--seed", help="Seeds the choice of shots and sampling."),
        as_json: bool = typer.Option(False, "--json", help="Print a one-line JSON summary as the last line."),
    ) -> None:
        """Evaluate a model on a task: generate, score, write predictions.parquet and metrics.json.

        Metrics: the task's scores with a 95% Wilson interval, mean output tokens per item,
        format validity (share of outputs an answer could be cut from) and, for local models,
        the mean per-token loss of the reference answers.
        """
        from augscale.cli import emit_json
        from augscale.commands.data import _task
        from augscale.datasets_cache import Snapshot, resolve_snapshot
        from augscale.errors import AugscaleError
        from augscale.evaluate.run import evaluate_model
        from augscale.tasks import get_task

        if split not in ("train", "valid", "test"):
            raise AugscaleError(f"--split {split!r}: allowed values are train, valid, test")
        if snapshot is not None:
            try:
                snap = Snapshot.open(snapshot)
            except FileNotFoundError as e:
                raise AugscaleError(str(e)) from None
            if snap.task != task:
                raise AugscaleError(f"--snapshot {snapshot} holds task {snap.task!r}, not {task!r}")
            t = get_task(task, **snap.manifest.get("task_params", {})) if task == "jsonl" else _task(task)
        else:
            t = _task(task)
            snap = resolve_snapshot(t, data_dir=data_dir, cache_dir=cache_dir)
        out = out_dir or Path("runs") / "eval" / _run_name(task, model, api_model)
        metrics = evaluate_model(
            t, snap, model_path=model, endpoint=endpoint, api_model=api_model, split=split, limit=limit,
            shots=shots, prompt_style=prompt_style, max_new_tokens=max_new_tokens, temperature=temperature,
            batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus, device=device, dtype=dtype,
            compute_loss=not no_loss, api_key_env=api_key_env, max_failure_rate=max_failure_rate, seed=seed,
            out_dir=out,
        )
        loss = metrics["reference_loss"]
        lo, hi = metrics["ci95"]
        typer.echo(f"{task} {split}: accuracy {metrics['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] on {metrics['n']} items; "
                   f"{metrics['mean_output_tokens']:.1f} output tokens/item; format valid "
                   f"{metrics['format_validity']:.3f}" + (f"; reference loss {loss:.3f}" if loss is not None else "")
                   + f"\nwrote {out}/predictions.parquet and metrics.json", err=as_json)
        if as_json:
            emit_json(metrics)
