"""One evaluation run: prompts -> generations (local model or endpoint) -> scores -> files and metrics.

:func:`evaluate_model` takes plain arguments, so the CLI and the ablation driver call the
same thing. With ``out_dir`` it writes ``predictions.parquet`` (one row per item: id, prompt,
prediction, per-row scores, token counts, reference loss) and ``metrics.json``.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from augscale.errors import AugscaleError
from augscale.evaluate.prompts import STYLES, build_prompt, pick_shots
from augscale.evaluate.scoring import score_one
from augscale.llm.hf import DTYPES
from augscale.tasks import Task, get_task


class EvaluationError(AugscaleError, RuntimeError):
    """An evaluation that cannot run, or whose generations failed too often to be trusted."""


def load_records(records: Any, split: str = "test", limit: int | None = None) -> tuple[list[dict], dict]:
    """Records from a snapshot (its ``split``), a polars DataFrame or a list of dicts; the first ``limit``.

    Returns:
        (records, source): ``source`` describes where they came from (for metrics.json).
    """
    from augscale.datasets_cache import Snapshot

    source: dict[str, Any] = {"split": split}
    if isinstance(records, (str, Path)):
        records = Snapshot.open(records)
    if isinstance(records, Snapshot):
        source.update(snapshot=str(records.path), version=records.version)
        frame = records.scan(split)
        rows = (frame.head(limit) if limit else frame).collect().to_dicts()
    elif isinstance(records, pl.DataFrame):
        rows = (records.head(limit) if limit else records).to_dicts()
    else:
        rows = list(records)[:limit] if limit else list(records)
    if not rows:
        raise EvaluationError(f"no records to evaluate (split {split!r}, limit {limit})")
    return rows, source


def _shot_pool(records: Any, shot_pool: Any) -> list[dict]:
    from augscale.datasets_cache import Snapshot

    if shot_pool is not None:
        return load_records(shot_pool, "train")[0]
    if isinstance(records, (str, Path)):
        records = Snapshot.open(records)
    if isinstance(records, Snapshot):
        return records.read("train").to_dicts()
    raise EvaluationError("--shots needs solved examples: pass a snapshot (its train split is used) or shot_pool")


def _local_gpus(num_gpus: float | None) -> float:
    """GPUs per model copy: as given, else 1 when the Ray cluster has GPUs, else 0."""
    if num_gpus is not None:
        return num_gpus
    import ray

    from augscale.llm.raydata import ensure_ray

    ensure_ray()
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def evaluate_model(
    task: Task | str, records: Any, *, model_path: str | Path | None = None, endpoint: str | None = None,
    api_model: str | None = None, split: str = "test", limit: int | None = None, shots: int = 0,
    shot_pool: Any = None, prompt_style: str | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
    batch_size: int = 16, concurrency: int | None = None, num_gpus: float | None = None, device: str = "auto",
    dtype: str = "auto", compute_loss: bool = True, api_key_env: str = "OPENAI_API_KEY",
    request_timeout: float = 60.0, max_retries: int = 5, max_failure_rate: float = 0.1, seed: int = 0,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Generate answers for a task's records, score them, and return (and write) the metrics.

    Args:
        task: a Task or its registry name.
        records: a Snapshot (or its folder) whose ``split`` is read, a polars DataFrame, or record dicts.
        model_path: a local checkpoint or Hub id (batch generation on Ray Data). Or:
        endpoint, api_model: an OpenAI-compatible base URL and model name.
        limit: the first ``limit`` records only.
        shots: solved examples per prompt (natural style), drawn from ``shot_pool`` or the snapshot's train split.
        prompt_style: ``tokens`` or ``natural``; default ``tokens`` for a local zero-shot model,
            ``natural`` with shots or an endpoint.
        max_new_tokens, temperature: generation settings (greedy by default).
        batch_size: prompts per batch (local); concurrency: model copies (local, default 1) or
            requests in flight (endpoint, default 8).
        num_gpus: GPUs per model copy (default: 1 when the Ray cluster has GPUs).
        compute_loss: also compute the reference answers' loss (local models).
        max_failure_rate: raise after writing the files when more generations failed than this share.
        out_dir: where predictions.parquet and metrics.json go (None: nothing is written).

    Returns:
        The metrics dict (as in metrics.json).

    Raises:
        EvaluationError: neither or both of model_path and endpoint; bad settings; too many failures.
    """
    if (model_path is None) == (endpoint is None):
        raise EvaluationError("give exactly one of --model PATH_OR_HUB_ID or --endpoint URL (with --api-model)")
    if endpoint is not None and not api_model:
        raise EvaluationError("--endpoint needs --api-model NAME (the model the endpoint serves)")
    if dtype not in DTYPES:
        raise EvaluationError(f"--dtype {dtype!r}: allowed values are {', '.join(DTYPES)}")
    if not (device in ("auto", "cpu", "mps") or device.startswith("cuda")):
        raise EvaluationError(f"--device {device!r}: allowed values are auto, cpu, cuda, cuda:N, mps")
    task = get_task(task) if isinstance(task, str) else task
    style = prompt_style or ("tokens" if model_path is not None and shots == 0 else "natural")
    if style not in STYLES:
        raise EvaluationError(f"--prompt-style {style!r}: allowed values are {', '.join(STYLES)}")
    if style == "tokens" and shots:
        raise EvaluationError(f"--shots {shots} uses natural-language prompts: drop --prompt-style tokens")
    rows, source = load_records(records, split, limit)
    examples = pick_shots(_shot_pool(records, shot_pool), shots, seed=seed) if shots else []
    prompts = [build_prompt(task, r, style=style, shots=examples) for r in rows]

    start = time.monotonic()
    if model_path is not None:
        gens = _generate_local(prompts, rows, model_path, max_new_tokens=max_new_tokens, temperature=temperature,
                               batch_size=batch_size, concurrency=concurrency or 1, num_gpus=_local_gpus(num_gpus),
                               device=device, dtype=dtype, compute_loss=compute_loss, seed=seed)
    else:
        gens = _generate_endpoint(prompts, endpoint, api_model, style=style, max_new_tokens=max_new_tokens,
                                  temperature=temperature, concurrency=concurrency or 8, api_key_env=api_key_env,
                                  timeout=request_timeout, max_retries=max_retries)
    seconds = time.monotonic() - start

    table = []
    for r, p, g in zip(rows, prompts, gens):
        scores = score_one(task, g["prediction"], r["answer"], r.get("context"))
        ref_tokens = g.get("ref_tokens")
        table.append({
            "id": r["id"], "prompt": p.text, "prediction": g["prediction"], "reference": r["answer"],
            "output_tokens": g["output_tokens"], "prompt_tokens": g["prompt_tokens"],
            "finish_reason": g["finish_reason"], "generation_error": g["error"],
            "prompt_truncated": bool(g.get("prompt_truncated", False)),
            "ref_nll": g.get("ref_nll"), "ref_tokens": ref_tokens,
            "ref_loss": g["ref_nll"] / ref_tokens if ref_tokens else None, **scores,
        })
    metrics = _metrics(task, table, source, seconds)
    metrics.update(model=str(model_path) if model_path is not None else None, endpoint=endpoint, api_model=api_model,
                   prompt_style=style, shots=shots, shot_ids=[s["id"] for s in examples],
                   max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    if out_dir is not None:
        metrics["out_dir"] = str(write_run(out_dir, table, metrics))
    failures = metrics["generation_errors"]
    if failures > max_failure_rate * len(table):
        reasons = ", ".join(f"{k} x{v}" for k, v in metrics["generation_error_kinds"].items())
        where = metrics.get("out_dir", "(not written)")
        raise EvaluationError(f"{failures} of {len(table)} generations failed ({reasons}), above the "
                              f"max_failure_rate {max_failure_rate:g}; rows are in {where}")
    return metrics


def _generate_local(prompts, rows, model_path, *, compute_loss: bool, seed: int, **settings) -> list[dict]:
    from augscale.llm.hf import generate_local

    items = [{"id": str(r["id"]), "prompt": p.text, "continuation": p.continuation} for r, p in zip(rows, prompts)]
    p0 = prompts[0]
    out = generate_local(items, model_path, batch_size=settings.pop("batch_size"),
                         concurrency=settings.pop("concurrency"), num_gpus=settings.pop("num_gpus"),
                         continuation_col="continuation" if compute_loss else None, seed=seed,
                         stop_tokens=p0.stop_tokens, stop_strings=p0.stop_strings, **settings)
    if len(out) != len(items):
        raise EvaluationError(f"expected {len(items)} generations, got {len(out)}")
    return out


def _generate_endpoint(prompts, endpoint, api_model, *, style, max_new_tokens, temperature, concurrency,
                       api_key_env, timeout, max_retries) -> list[dict]:
    # In the driver, not on Ray: the work is waiting on HTTP, which threads do well; a
    # pipeline that needs it distributed maps EndpointGenerator with augscale.llm.raydata.map_batches.
    # The token style (our checkpoint behind e.g. vLLM) sends the raw prompt to text completions.
    from augscale.llm.endpoint import EndpointGenerator, RetryPolicy

    p0 = prompts[0]
    api = "completions" if style == "tokens" else "chat"
    gen = EndpointGenerator(endpoint, api_model, system=p0.system, max_tokens=max_new_tokens, api=api,
                            temperature=temperature, stop=p0.stop_strings + p0.stop_tokens, concurrency=concurrency,
                            api_key_env=api_key_env, timeout=timeout, retry=RetryPolicy(max_attempts=max_retries))
    batch = gen({"prompt": [p.text if api == "completions" else p.user for p in prompts]})
    keys = ("prediction", "output_tokens", "prompt_tokens", "finish_reason", "error")
    return [{k: _plain(batch[k][i]) for k in keys} for i in range(len(prompts))]


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _metrics(task: Task, table: list[dict], source: dict, seconds: float) -> dict[str, Any]:
    n = len(table)
    summary = task.summarize(table)
    out_tokens = sum(r["output_tokens"] for r in table)
    ref_tokens = sum(r["ref_tokens"] or 0 for r in table)
    kinds = collections.Counter(r["generation_error"].split(":", 1)[0] for r in table if r["generation_error"])
    return {
        "task": task.name, **source, **summary,
        "mean_output_tokens": out_tokens / n,
        "format_validity": sum(r["format_valid"] for r in table) / n,
        # token-weighted, like a training loss: sum of NLL over all reference tokens / their count
        "reference_loss": sum(r["ref_nll"] or 0.0 for r in table) / ref_tokens if ref_tokens else None,
        "generation_errors": sum(kinds.values()), "generation_error_kinds": dict(kinds),
        "prompts_truncated": sum(r["prompt_truncated"] for r in table),
        "finish_length": sum(r["finish_reason"] == "length" for r in table),
        "seconds": round(seconds, 3), "output_tokens_per_s": out_tokens / seconds if seconds else None,
    }


def write_run(out_dir: str | Path, table: Sequence[dict], metrics: dict) -> Path:
    """Write predictions.parquet and metrics.json (each via a temporary file and a rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.parquet.tmp"
    frame = pl.DataFrame(list(table), infer_schema_length=None)
    # a column that is null on every row (no generation errors) is stored as text, not as Null
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
    frame.write_parquet(tmp)
    os.replace(tmp, out / "predictions.parquet")
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps({**metrics, "out_dir": str(out)}, indent=2, default=str) + "\n")
    os.replace(tmp, out / "metrics.json")
    return out
