"""augscale model init: a checkpoint that plain transformers loads, special tokens as single tokens."""

from __future__ import annotations

import json
import subprocess
import sys


def test_model_init_cli_checkpoint_loads_with_plain_transformers(tmp_path, data_dir, cache_dir):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "# augscale model init tiny.yaml\nkind: model\ntask: {name: viggo}\n"
        f"data: {{data_dir: {data_dir}, cache_dir: {cache_dir}}}\n"
        "vocab_size: 1000\nhidden_size: 32\nnum_layers: 1\nnum_heads: 2\ntokenizer_max_texts: 500\n"
    )
    res = subprocess.run([sys.executable, "-m", "augscale.cli", "model", "init", str(cfg),
                          "--out-dir", str(tmp_path / "m"), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(summary["path"])
    tok = AutoTokenizer.from_pretrained(summary["path"])
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
    for t in ("<START_Q>", "<END_Q>", "<START_A>", "<END_A>"):
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == t
    text = "<START_Q>Some game.<END_Q><START_A>inform(name[X])<END_A>"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<END_A>")
    out = model(**tok(text, return_tensors="pt"))
    assert out.logits.shape[-1] == len(tok) and torch.isfinite(out.logits).all()


def test_tiny_model_fixture(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert tok.pad_token == "<PAD>" and tok.eos_token == "<END_A>"
