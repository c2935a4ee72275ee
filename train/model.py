"""Load any Hugging Face causal LM for full fine-tuning, with the task's special tokens.

The task's markers (``<START_Q>``, ``<END_Q>``, ``<START_A>``, ``<END_A>``) are added to the
tokenizer when missing, the embeddings grow to the new vocabulary and each new row (input
and output embeddings) starts at the mean of the existing rows, so a new token begins as
an "average" token rather than noise. The generation config stops at the end token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from augscale.errors import AugscaleError


class ModelLoadError(AugscaleError, OSError):
    """The model or tokenizer could not be loaded from the given id or folder."""


def load_tokenizer(name_or_path: str | Path, special_tokens: list[str]):
    """The tokenizer with every special token present (added when missing) and a pad token.

    Raises:
        ModelLoadError: no tokenizer at that id or folder.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{name_or_path}: cannot load a tokenizer ({e})") from None
    vocab = tokenizer.get_vocab()
    missing = [t for t in special_tokens if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split, skipped when decoding
    if tokenizer.pad_token is None:
        # Padding positions are masked out of attention and loss; any existing token serves.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token or special_tokens[-1]
    return tokenizer


def load_model(name_or_path: str | Path, tokenizer, *, end_token: str, dtype: str = "fp32",
               attn_implementation: str = "sdpa", zero3: bool = False):
    """The causal LM, its embeddings grown to the tokenizer's vocabulary, new rows at the mean.

    Under ZeRO-3 the caller holds a ``transformers.integrations.HfDeepSpeedConfig`` while this
    runs, so the weights are partitioned as they load (``zero3=True`` gathers the embedding
    rows for the mean initialization).

    Raises:
        ModelLoadError: no model at that id or folder.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch_dtype,
                                                     attn_implementation=attn_implementation)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{name_or_path}: cannot load a causal LM ({e})") from None
    old_rows = model.get_input_embeddings().weight.shape[0] if not zero3 else model.config.vocab_size
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        init_new_rows_to_mean(model, old_rows, zero3=zero3)
    set_generation_stop(model, tokenizer, end_token)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def init_new_rows_to_mean(model, old_rows: int, *, zero3: bool = False) -> None:
    """Set embedding rows ``old_rows:`` (input and, when untied, output) to the mean of the old rows."""
    import torch

    weights = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not weights[0]:
        weights.append(out.weight)
    if zero3:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(weights, modifier_rank=0)
    else:
        import contextlib

        gather = contextlib.nullcontext()
    with gather, torch.no_grad():
        for w in weights:
            if w.shape[0] > old_rows:  # empty on ranks that do not modify under ZeRO-3
                w[old_rows:] = w[:old_rows].mean(dim=0, keepdim=True).to(w.dtype)


def set_generation_stop(model, tokenizer, end_token: str) -> None:
    """Generation stops at ``end_token`` (and the model's own end-of-sequence token, if any)."""
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    gen = model.generation_config
    own = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    gen.eos_token_id = [end_id] + [i for i in own if i is not None and i != end_id]
    gen.pad_token_id = tokenizer.pad_token_id


def save_hf_checkpoint(folder: Path | str, model, tokenizer, state_dict: dict[str, Any] | None = None,
                       extra: dict[str, Any] | None = None) -> Path:
    """Save weights (safetensors), config, generation config and tokenizer as an HF folder.

    ``state_dict`` is the gathered full state (ZeRO-3); ``extra`` goes to ``trainer_state.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if extra is not None:
        (folder / "trainer_state.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")
    return folder
