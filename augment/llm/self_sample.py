"""``self_sample``: rejection-sampling fine-tuning (RFT, Yuan et al. 2023) from a local checkpoint.

A fine-tuned model answers every training question ``samples`` (k) times at a temperature,
through the batch generation engine of :mod:`augscale.llm.hf` (one model copy per Ray Data
actor; a GPU each on a cluster). A sample is kept if it is correct: for gsm8k its ``#### n``
equals the gold answer and every annotation recomputes; for viggo its MR matches exactly; for
other tasks the task's own ``correct`` score. Among the correct samples of one question, one
is kept per distinct *equation list* (RFT's diversity rule): for gsm8k the sequence of
annotation expressions (spaces removed), elsewhere the normalized target. A sample whose
equation list is the seed's own adds nothing and is rejected too.

Rejection reasons: ``generation_error``, ``refusal``, ``truncated``, ``no_final_answer``,
``no_annotations``, ``bad_annotation``, ``wrong_annotation``, ``wrong_answer``, ``incorrect``,
``same_as_seed``, ``duplicate_equations``.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Any

from pydantic import Field

from augscale.augment.llm.gsm8k import check_solution
from augscale.augment.manifest import module_hash
from augscale.augment.strategies import Candidate, Strategy, StrategyParams, register_strategy
from augscale.tasks import Task
from augscale.tasks.arith import annotations
from augscale.tasks.base import normalize_ws


class SelfSampleParams(StrategyParams):
    """Params of ``self_sample``."""

    model_path: str = Field(..., description="a fine-tuned HF checkpoint folder or Hub id")
    samples: int = Field(4, ge=1, le=256, description="samples per training question (k)")
    temperature: float = Field(0.7, gt=0, le=2, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    micro_batch_size: int = Field(16, ge=1, description="questions per forward batch (speed only)")
    device: str = Field("auto", description="auto: cuda when the actor has a GPU, else cpu (speed only)")
    dtype: str = Field("auto", description="auto: bf16 on GPU, fp32 on CPU (speed only)")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per model copy; default 1 when the cluster has "
                                   "GPUs, else 0 (speed only)")
    actors: int = Field(1, ge=1, description="model copies (speed only)")


def checkpoint_fingerprint(model_path: str) -> str:
    """What identifies a checkpoint's content cheaply: for a folder, every file's name and size and
    the bytes of its small files and of the first and last MiB of large ones; else the Hub id."""
    path = Path(model_path)
    if not path.is_dir():
        return f"hub:{model_path}"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(path)}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


def equation_key(task: Task, target: str) -> str:
    """RFT's notion of a distinct reasoning path: the equation list (gsm8k), else the normalized target."""
    if task.name == "gsm8k":
        return "|".join("".join(expr.split()) for expr, _ in annotations(target))
    return normalize_ws(target).lower()


def check_sample(task: Task, seed: dict[str, Any], sample: dict[str, Any]) -> tuple[str, str | None, dict]:
    """One generated sample for ``seed``: (target, None or the rejection reason, evidence)."""
    if sample.get("error"):
        return "", "generation_error", {"error": str(sample["error"])[:200]}
    text = task.cut_target(sample["prediction"])
    if task.name == "gsm8k":
        return check_solution(text, sample.get("finish_reason") or "stop", seed["answer"])
    score = task.score(sample["prediction"], seed["target"], seed.get("context"))
    correct = score.get("exact", score["correct"]) if task.name == "viggo" else score["correct"]
    target = task.extract_answer(sample["prediction"]) or text
    return target, None if correct else "incorrect", {}


class _SelfSample(Strategy):
    """RFT: k samples per training question from a local checkpoint, correct and distinct ones kept.

    One output row (gsm8k): ``{"id": "gsm8k-train-00001~self_sample-2", "prompt": "Weng earns $12
    an hour...", "target": "She earns 12/60 = $<<12/60=0.2>>0.2 a minute... #### 10", "answer":
    "10", "source": "self_sample", "meta": {"self_sample": {"model": "runs/sft/checkpoint",
    "equations": "12/60|0.2*50", "output_tokens": 41, ...}}}``
    """

    name = "self_sample"
    Params = SelfSampleParams
    new_targets = True  # the seed's own question: dedup on question and solution
    input_columns = ("id", "prompt", "context", "target", "answer")
    resource_params = ("micro_batch_size", "device", "dtype", "num_gpus", "actors")

    @classmethod
    def init_kwargs(cls, params: StrategyParams, shared: dict[str, Any]) -> dict[str, Any]:
        kwargs = params.model_dump()
        kwargs["checkpoint"] = checkpoint_fingerprint(kwargs["model_path"])
        return kwargs

    @classmethod
    def cache_params(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        # the checkpoint's content, not where it lies; and the code that samples and checks
        out = {k: v for k, v in super().cache_params(kwargs).items() if k != "model_path"}
        out["code"] = module_hash("augscale.augment.llm.gsm8k", "augscale.tasks.arith", "augscale.llm.hf")
        return out

    @classmethod
    def ray_options(cls, **kwargs: Any) -> dict[str, Any]:
        gpus = kwargs.get("num_gpus")
        if gpus is None:
            import ray

            gpus = 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        options: dict[str, Any] = {"num_cpus": 1, "concurrency": int(kwargs.get("actors", 1))}
        if gpus:
            options["num_gpus"] = gpus
        return options

    def __init__(self, task: Task, *, seed: int, resources: dict[str, Any] | None = None, **params: Any):
        from augscale.llm.hf import load_model

        super().__init__(task, seed=seed, resources=resources, **params)
        self.model, self.tokenizer = load_model(params["model_path"], device=params.get("device", "auto"),
                                                dtype=params.get("dtype", "auto"))

    def generate(self, seeds: list[dict[str, Any]]) -> list[Candidate]:
        from augscale.llm.hf import generate

        task, k = self.task_obj, int(self.params.get("samples", 4))
        step = int(self.params.get("micro_batch_size", 16))
        samples: list[list[dict[str, Any]]] = []
        for c in range(0, len(seeds), step):
            chunk = seeds[c:c + step]
            # seeded by the run's seed and the chunk's ids: the same samples whichever actor runs it
            chunk_seed = zlib.crc32(f"{self.seed}:{chunk[0]['id']}".encode())
            samples += generate(self.model, self.tokenizer, [task.prompt_text(s) for s in chunk],
                                max_new_tokens=int(self.params.get("max_new_tokens", 256)),
                                stop_tokens=[task.tokens.end_a], temperature=float(self.params.get("temperature", 0.7)),
                                top_p=float(self.params.get("top_p", 1.0)), num_samples=k, seed=chunk_seed)
        out = []
        for seed, outs in zip(seeds, samples):
            out += self._keep(seed, outs)
        return out

    def _keep(self, seed: dict[str, Any], outs: list[dict[str, Any]]) -> list[Candidate]:
        task = self.task_obj
        seen = {equation_key(task, seed["target"])}
        kept = []
        for i, sample in enumerate(outs):
            target, reason, ev = check_sample(task, seed, sample)
            key = equation_key(task, target) if reason is None else None
            if reason is None and key in seen:
                reason = "same_as_seed" if key == equation_key(task, seed["target"]) else "duplicate_equations"
            ev = {"model": self.params["model_path"], "checkpoint": self.params.get("checkpoint"),
                  "output_tokens": sample.get("output_tokens"), **ev, **({"equations": key} if key else {})}
            if reason is not None:
                kept.append(Candidate(seed["id"], i, prompt=seed["prompt"], target=target, context=seed.get("context"),
                                      reason=reason, evidence=ev))
                continue
            seen.add(key)
            answer = ev.get("final") if task.name == "gsm8k" else None
            kept.append(Candidate(seed["id"], i, prompt=seed["prompt"], target=target, context=seed.get("context"),
                                  answer=answer, evidence=ev))
        return kept

    def block_usage(self) -> dict[str, float]:
        return {}


# One registration per task: self_sample works for any task through the task's own scoring.
for _task in ("gsm8k", "viggo", "sql", "jsonl"):
    register_strategy(type(f"SelfSample_{_task}", (_SelfSample,), {"task": _task, "__module__": __name__,
                                                                     "__qualname__": f"SelfSample_{_task}"}))
