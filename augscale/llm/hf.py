"""Local Hugging Face causal LMs: batched generation and reference-answer loss, on CPU or GPU.

Plain functions (:func:`load_model`, :func:`generate`, :func:`reference_nll`) do the work in
the calling process; :class:`HFGenerator` is the Ray Data step that holds one model copy per
actor; :func:`generate_local` runs it over records with an actor pool. Any HF checkpoint works
(a path or a Hub id); device and precision come from what is available unless set.

Generation: greedy by default; ``temperature > 0`` samples ``num_samples`` continuations per
prompt (rejection-sampling fine-tuning draws several). Prompts are left-padded into one batch
and generation stops at the stop tokens (the task's end token, the model's EOS) or stop strings.
The returned text excludes the stop token or string, as OpenAI-compatible APIs return it;
``output_tokens`` counts every generated token, the stop token included.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

from augscale.llm.batch import column, expand

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str):
    """``auto`` -> bfloat16 on a GPU that supports it (else float16), float32 on CPU.

    Raises:
        ValueError: an unknown dtype name (lists the allowed ones).
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: allowed values are {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def load_model(model_path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """Load a causal LM and its tokenizer for inference (eval mode, on ``device``).

    A tokenizer without a pad token gets its EOS as pad (padding is masked out anyway).

    Returns:
        (model, tokenizer)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=pick_dtype(dtype, device))
    return model.to(device).eval(), tokenizer


def split_stops(tokenizer, model, stop_tokens: Sequence[str] = ()) -> tuple[list[int], list[str]]:
    """Stop tokens -> (token ids to stop at, stop strings for what is not one token).

    The model's and tokenizer's EOS ids are always included.
    """
    ids: list[int] = []
    strings: list[str] = []
    vocab = tokenizer.get_vocab()
    for tok in stop_tokens:
        if tok in vocab:
            ids.append(vocab[tok])
        else:
            strings.append(tok)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for e in ([eos] if isinstance(eos, int) else list(eos or [])) + [tokenizer.eos_token_id]:
        if e is not None and e not in ids:
            ids.append(int(e))
    return ids, strings


def _left_pad(rows: list[list[int]], pad_id: int):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def _truncate_left(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """Keep the last ``limit`` tokens (and a leading BOS)."""
    if len(ids) <= limit:
        return ids
    if bos is not None and ids and ids[0] == bos:
        return [bos] + ids[len(ids) - limit + 1:]
    return ids[len(ids) - limit:]


def max_prompt_len(model, max_new_tokens: int) -> int | None:
    """The longest prompt that leaves room for ``max_new_tokens`` in the model's context."""
    ctx = getattr(model.config, "max_position_embeddings", None)
    return max(1, ctx - max_new_tokens) if ctx else None


def generate(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 256, min_new_tokens: int = 0,
             stop_tokens: Sequence[str] = (), stop_strings: Sequence[str] = (), temperature: float = 0.0,
             top_p: float = 1.0, top_k: int | None = None, num_samples: int = 1,
             max_prompt_tokens: int | None = None, seed: int | None = None) -> list[list[dict[str, Any]]]:
    """Generate for one batch of prompts (left-padded together).

    Args:
        prompts: the input texts, special tokens included as text.
        max_new_tokens, min_new_tokens: bounds on generated tokens (``min == max`` fixes the length).
        stop_tokens: token texts to stop at (the task's end token); the model's EOS always stops.
        stop_strings: texts to stop at (cut from the output).
        temperature: 0 is greedy; above 0 samples (with ``top_p``, ``top_k``; no top-k unless set).
        num_samples: continuations per prompt (needs ``temperature > 0`` when above 1).
        max_prompt_tokens: longer prompts keep their last tokens (default: the model's context
            minus ``max_new_tokens``).
        seed: seeds the sampler (reproducible per batch).

    Returns:
        Per prompt, ``num_samples`` dicts with the columns of :mod:`augscale.llm.batch` and
        ``prompt_truncated``.

    Raises:
        ValueError: several samples requested from greedy decoding.
    """
    import torch
    from transformers import GenerationConfig

    if num_samples > 1 and temperature <= 0:
        raise ValueError(f"num_samples={num_samples} needs temperature > 0 (greedy decoding gives one answer)")
    if not prompts:
        return []
    stop_ids, extra_strings = split_stops(tokenizer, model, stop_tokens)
    strings = list(stop_strings) + extra_strings
    pad_id = tokenizer.pad_token_id
    limit = max_prompt_tokens or max_prompt_len(model, max_new_tokens)
    encoded = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    truncated = [bool(limit) and len(e) > limit for e in encoded]
    if limit:
        encoded = [_truncate_left(e, limit, tokenizer.bos_token_id) for e in encoded]
    input_ids, mask = _left_pad(encoded, pad_id)
    sampling = temperature > 0
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=sampling,
        temperature=temperature if sampling else None, top_p=top_p if sampling else None,
        top_k=(top_k or 0) if sampling else None, num_return_sequences=num_samples,
        eos_token_id=stop_ids, pad_token_id=pad_id, stop_strings=strings or None,
    )
    if seed is not None and sampling:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                             generation_config=cfg, tokenizer=tokenizer if strings else None)
    new = out[:, input_ids.shape[1]:].tolist()  # (B * num_samples, <= max_new_tokens)
    stop_set = set(stop_ids)
    results: list[list[dict[str, Any]]] = [[] for _ in prompts]
    for j, toks in enumerate(new):
        i, k = divmod(j, num_samples)
        text_end, n_tokens, finish = len(toks), len(toks), "length"
        for pos, t in enumerate(toks):
            if t in stop_set:  # the end token: generated (counted), not part of the text
                text_end, n_tokens, finish = pos, pos + 1, "stop"
                break
            if strings and t == pad_id:  # padding after a stop string ended this row
                text_end, n_tokens, finish = pos, pos, "stop"
                break
        text = tokenizer.decode(toks[:text_end], skip_special_tokens=False)
        for s in strings:
            if s in text:
                text, finish = text.split(s, 1)[0], "stop"
        results[i].append({"sample_index": k, "prediction": text, "output_tokens": n_tokens,
                           "prompt_tokens": len(encoded[i]), "finish_reason": finish, "error": None,
                           "prompt_truncated": truncated[i]})
    return results


def reference_nll(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str], *,
                  max_tokens: int | None = None) -> list[tuple[float, int]]:
    """Summed negative log-likelihood (nats) of each continuation given its prompt, and its token count.

    One forward pass over the right-padded batch; only the continuation's tokens are scored.
    A sequence longer than ``max_tokens`` (default: the model's context) loses prompt tokens
    from the left. ``sum / count`` is the mean per-token loss of that reference.
    """
    import torch

    limit = max_tokens or getattr(model.config, "max_position_embeddings", None) or 10**9
    seqs, starts = [], []
    for p, c in zip(prompts, continuations):
        p_ids = tokenizer(p, add_special_tokens=True)["input_ids"]
        c_ids = tokenizer(c, add_special_tokens=False)["input_ids"][:limit - 1]
        p_ids = p_ids[max(0, len(p_ids) + len(c_ids) - limit):]
        seqs.append(p_ids + c_ids)
        starts.append(len(p_ids))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (s, start) in enumerate(zip(seqs, starts)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        labels[i, start:len(s)] = ids[i, start:len(s)]
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        target = labels[:, 1:].to(model.device)  # position t predicts token t+1
        valid = target != -100  # (B, T-1)
        # only the continuation's positions, in float32: (N, V) rather than (B, T, V)
        tok_nll = torch.nn.functional.cross_entropy(logits[:, :-1][valid].float(), target[valid], reduction="none")
        rows = torch.arange(len(seqs), device=valid.device).unsqueeze(1).expand_as(valid)[valid]
        nll = torch.zeros(len(seqs), device=tok_nll.device).index_add_(0, rows, tok_nll)
    return [(float(n), int(v)) for n, v in zip(nll.tolist(), valid.sum(dim=1).tolist(), strict=True)]


class HFGenerator:
    """Ray Data step holding one model copy: generation (and optionally reference loss) per batch.

    ``__init__`` loads the model once per actor; ``__call__(batch)`` returns the batch with
    ``num_samples`` rows per prompt and the columns of :mod:`augscale.llm.batch`, plus
    ``ref_nll`` and ``ref_tokens`` when ``continuation_col`` is set. Example output row::

        {"id": "gsm8k-test-00007", "prompt": "<START_Q>...<END_Q><START_A>", "target": "...",
         "sample_index": 0, "prediction": "She has 3 + 4 = 7 ... #### 7", "output_tokens": 38,
         "prompt_tokens": 61, "finish_reason": "stop", "error": None, "prompt_truncated": False,
         "ref_nll": 96.3, "ref_tokens": 45}

    Args:
        model_path: a checkpoint folder or a Hub id.
        prompt_col: the column holding the prompts.
        continuation_col: a column with reference continuations to score (None: no loss).
        micro_batch_size: generate in chunks of this many prompts, sorted by length (None: the whole batch).
        device, dtype: ``auto`` picks the GPU and bf16 when there is one.
        seed: with the batch's prompts, seeds sampling so that results do not depend on scheduling.
        **gen: :func:`generate` settings (``max_new_tokens``, ``temperature``, ``num_samples``, ...).
    """

    def __init__(self, model_path: str, *, prompt_col: str = "prompt", continuation_col: str | None = None,
                 micro_batch_size: int | None = None, device: str = "auto", dtype: str = "auto", seed: int = 0,
                 **gen: Any):
        self.model, self.tokenizer = load_model(model_path, device=device, dtype=dtype)
        self.prompt_col, self.continuation_col = prompt_col, continuation_col
        self.micro, self.seed, self.gen = micro_batch_size, seed, gen

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        prompts = [str(p) for p in column(batch, self.prompt_col)]
        seed = self.seed ^ zlib.crc32("\x00".join(prompts).encode())
        samples: list[list[dict[str, Any]]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding per chunk
        step = self.micro or len(prompts) or 1
        for c in range(0, len(order), step):
            idx = order[c:c + step]
            out = generate(self.model, self.tokenizer, [prompts[i] for i in idx], seed=seed + c, **self.gen)
            for i, s in zip(idx, out):
                samples[i] = s
        if self.continuation_col:
            conts = [str(x) for x in column(batch, self.continuation_col)]
            for c in range(0, len(order), step):
                idx = order[c:c + step]
                for i, (nll, n) in zip(idx, reference_nll(self.model, self.tokenizer, [prompts[i] for i in idx],
                                                          [conts[i] for i in idx])):
                    for s in samples[i]:
                        s["ref_nll"], s["ref_tokens"] = nll, n
        return expand(batch, samples)


def generate_local(rows: Sequence[Mapping[str, Any]], model_path: str | Path, *, batch_size: int = 16,
                   concurrency: int = 1, num_gpus: float = 0, num_cpus: float | None = None,
                   **generator_kwargs: Any) -> list[dict[str, Any]]:
    """Run :class:`HFGenerator` over ``rows`` on Ray Data with an actor pool; output rows in input order.

    Args:
        rows: dicts of plain values with at least the prompt column.
        batch_size: prompts per generation batch.
        concurrency: model copies (actors).
        num_gpus: GPUs per actor (1 on a GPU cluster; 0 on CPU).
        num_cpus: CPUs per actor (default 1 on CPU, none reserved on GPU).
        **generator_kwargs: :class:`HFGenerator` arguments.

    Returns:
        One dict per sample: the input row's fields and the generation columns.
    """
    import ray.data

    from augscale.llm.raydata import map_batches

    items = [{**r, "_row": i} for i, r in enumerate(rows)]
    if not items:
        return []
    ds = ray.data.from_items(items)
    if num_cpus is None:
        num_cpus = None if num_gpus else 1
    ds = map_batches(ds, HFGenerator, batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus or None,
                     num_cpus=num_cpus, fn_constructor_kwargs={"model_path": str(model_path), **generator_kwargs})
    out = sorted(ds.take_all(), key=lambda r: (r["_row"], r["sample_index"]))
    for r in out:
        del r["_row"]
    return out
