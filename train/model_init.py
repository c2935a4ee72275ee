"""Small Llama-architecture models for offline work: a real HF checkpoint built from a config.

Where no weights can be downloaded (tests, CI, the demo on a laptop), :func:`init_small_model`
trains a byte-level BPE tokenizer on a snapshot's training text (the task's special tokens
included as single tokens) and saves a randomly initialised ``LlamaForCausalLM`` next to it.
Every later stage loads it with ``AutoModelForCausalLM.from_pretrained`` like any Hub model.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

PAD_TOKEN = "<PAD>"


def build_tokenizer(texts: Iterable[str], special_tokens: list[str], vocab_size: int = 8000, *,
                    eos_token: str, pad_token: str = PAD_TOKEN):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    ``special_tokens`` (the task's markers) and ``pad_token`` become single, never-split tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [pad_token] + [t for t in special_tokens if t != pad_token]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos_token, pad_token=pad_token,
        additional_special_tokens=[t for t in special_tokens if t not in (eos_token, pad_token)],
        padding_side="right", clean_up_tokenization_spaces=False,
    )


def init_small_model(texts: list[str], special_tokens: list[str], out_dir: Path | str, *, end_token: str,
                     vocab_size: int = 8000, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int | None = None, intermediate_size: int | None = None,
                     max_position_embeddings: int = 512, tokenizer_max_texts: int = 20000,
                     seed: int = 0) -> Path:
    """Build and save a small Llama causal LM and its tokenizer as an HF checkpoint folder.

    Args:
        texts: training texts (already formatted with the special tokens) for the BPE.
        special_tokens: the task's markers; each becomes one token.
        end_token: the token generation stops at (``eos_token`` and the generation config's eos).

    Returns:
        The checkpoint folder.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sample = texts if len(texts) <= tokenizer_max_texts else rng.sample(texts, tokenizer_max_texts)
    tokenizer = build_tokenizer(sample, special_tokens, vocab_size, eos_token=end_token)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads or num_heads,
        # Llama's MLP is ~8/3 of the width, rounded up to a multiple of 64
        intermediate_size=intermediate_size or 64 * -(-int(hidden_size * 8 / 3) // 64),
        max_position_embeddings=max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def init_from_config(cfg, out_dir: Path | str | None = None) -> tuple[Path, dict]:
    """Unpack a :class:`augscale.config.ModelInitConfig` (CLI edge) into :func:`init_small_model`."""
    from transformers import AutoConfig

    from augscale.datasets_cache import resolve_snapshot

    task = cfg.task.build()
    snap = resolve_snapshot(task, snapshot=cfg.data.snapshot, data_dir=cfg.data.data_dir, cache_dir=cfg.data.cache_dir)
    texts = [task.train_text(r) for r in snap.read("train").to_dicts()]
    path = init_small_model(
        texts, task.tokens.all(), out_dir or cfg.out_dir, end_token=task.tokens.end_a,
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings, tokenizer_max_texts=cfg.tokenizer_max_texts,
        seed=cfg.seed,
    )
    mcfg = AutoConfig.from_pretrained(path)
    params = _count_params(mcfg)
    return path, {"params": params, "vocab_size": mcfg.vocab_size, "snapshot": str(snap.path)}


def _count_params(config) -> int:
    """Parameters of a Llama config without building the model."""
    h, v, L, i = config.hidden_size, config.vocab_size, config.num_hidden_layers, config.intermediate_size
    kv = h * config.num_key_value_heads // config.num_attention_heads
    per_layer = h * h * 2 + 2 * h * kv + 3 * h * i + 2 * h
    return v * h * (1 if config.tie_word_embeddings else 2) + L * per_layer + h
