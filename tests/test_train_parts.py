"""The training parts without Ray: config, tokenization and batching, model loading, DeepSpeed, the loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from augscale.config import ConfigError, TrainConfig, load_config
from augscale.tasks import get_task
from augscale.train.batching import (IGNORE_INDEX, count_micro_batches, micro_batches, table_windows,
                                     tokenize_records)
from augscale.train.model import load_model, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train" / "gsm8k_tiny.yaml"
TASK = get_task("gsm8k")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model, TASK.tokens.all())


@pytest.fixture(scope="module")
def records(gsm8k_snapshot) -> list[dict]:
    return gsm8k_snapshot.read("train").head(2048).to_dicts()


# --- config ------------------------------------------------------------------------------------
def test_tiny_config_loads_and_bad_values_say_how_to_fix():
    cfg = load_config(TINY_CONFIG, TrainConfig)
    assert cfg.scaling.num_workers == 2 and cfg.deepspeed.zero_stage == 2 and cfg.loss_on == "answer"
    with pytest.raises(ConfigError) as err:
        load_config(TINY_CONFIG, TrainConfig, ["deepspeed.offload_params=true", "batching.window=100",
                                               "model.path=some/model"])
    text = str(err.value)
    assert "deepspeed: offload_params needs zero_stage 3" in text
    assert "window (100) must be a multiple of micro_batch_size (8)" in text
    assert "give exactly one of model.path" in text
    with pytest.raises(ConfigError, match="data.curriculum: unknown curriculum 'easy_to_hrd'. Did you mean"):
        load_config(TINY_CONFIG, TrainConfig, ["data.curriculum=easy_to_hrd"])
    with pytest.raises(ConfigError, match="batching.windw: unknown key. Did you mean 'window'"):
        load_config(TINY_CONFIG, TrainConfig, ["batching.windw=3"])


# --- tokenization and batching -----------------------------------------------------------------
def test_loss_is_masked_to_the_answer(tokenizer, records):
    rec = records[0]
    cols = tokenize_records(tokenizer, TASK, [rec], max_seq_len=512, loss_on="answer")
    batch = next(micro_batches(table_windows(cols, 8), micro_batch_size=8, pad_id=tokenizer.pad_token_id))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    learned = ids[labels != IGNORE_INDEX]
    assert tokenizer.decode(learned) == rec["target"] + "<END_A>"  # the answer and the end token, nothing else
    assert tokenizer.decode(ids[labels == IGNORE_INDEX]).endswith("<START_A>")
    every = tokenize_records(tokenizer, TASK, [rec], max_seq_len=512, loss_on="all")
    assert every["n_masked"].tolist() == [0]
    short = tokenize_records(tokenizer, TASK, [rec], max_seq_len=16, loss_on="answer")
    assert short["truncated"].tolist() == [True] and len(short["input_ids"][0]) == 16


def test_grouped_batches_keep_95_percent_real_tokens_on_gsm8k(tokenizer, records):
    cols = tokenize_records(tokenizer, TASK, records, max_seq_len=512)
    cols["order"] = np.arange(len(records))
    share = {}
    for strategy in ("grouped", "padded"):
        batches = list(micro_batches(table_windows(cols, 1024), micro_batch_size=16, pad_id=tokenizer.pad_token_id,
                                     strategy=strategy, max_seq_len=512))
        assert len(batches) == count_micro_batches(len(records), 1024, 16)
        share[strategy] = sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["input_ids"].numel()
                                                                                      for b in batches)
        # no example attends to another: each is its own row, padding masked out of attention and loss
        for b in batches:
            assert ((b["attention_mask"] == 0) <= (b["labels"] == IGNORE_INDEX)).all()
    assert share["grouped"] >= 0.95
    assert share["padded"] < 0.45  # padding to 512, the baseline


# --- model -------------------------------------------------------------------------------------
def test_missing_special_tokens_are_added_with_mean_embeddings(gsm8k_snapshot, tmp_path):
    from augscale.train.model_init import init_small_model

    texts = [TASK.train_text(r) for r in gsm8k_snapshot.read("train").head(300).to_dicts()]
    plain = init_small_model([t.replace("<", "[") for t in texts], ["</s>"], tmp_path / "plain", end_token="</s>",
                             vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=64)
    tok = load_tokenizer(plain, TASK.tokens.all())
    assert all(len(tok.encode(t, add_special_tokens=False)) == 1 for t in TASK.tokens.all())
    model = load_model(plain, tok, end_token="<END_A>")
    old = model.config.vocab_size - 4
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == old + 4
    for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        mean = w[:old].mean(dim=0)
        assert torch.allclose(w[old:], mean.expand(4, -1))
    assert model.generation_config.eos_token_id[0] == tok.convert_tokens_to_ids("<END_A>")


# --- DeepSpeed config and schedule ------------------------------------------------------------
def test_deepspeed_config_follows_the_settings():
    from augscale.train.deepspeed_config import build_ds_config, resolve_precision

    cfg = build_ds_config(zero_stage=3, micro_batch_size=4, grad_accum=8, world_size=16, precision="bf16",
                          clip_grad_norm=1.0, offload_optimizer=True, offload_params=True, use_gpu=True)
    assert cfg["train_batch_size"] == 4 * 8 * 16 and cfg["bf16"]["enabled"]
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert resolve_precision("auto", use_gpu=False) == "fp32" and resolve_precision("auto", use_gpu=True) == "bf16"
    with pytest.raises(ValueError, match="bf16 needs GPU workers"):
        resolve_precision("bf16", use_gpu=False)
    with pytest.raises(ValueError, match="offload_params needs zero_stage 3"):
        build_ds_config(zero_stage=2, micro_batch_size=1, grad_accum=1, world_size=1, precision="fp32",
                        clip_grad_norm=None, offload_params=True)


def test_lr_warms_up_then_decays_to_the_floor():
    from augscale.train.loop import lr_factor

    cos = [lr_factor(s, total_steps=100, warmup_steps=10, decay="cosine", min_lr_ratio=0.1) for s in range(101)]
    assert cos[0] < cos[5] < cos[9] <= 1.0 and cos[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[10:], cos[11:])) and cos[100] == pytest.approx(0.1)
    lin = [lr_factor(s, total_steps=100, warmup_steps=0, decay="linear") for s in (0, 50, 100)]
    assert lin == pytest.approx([1.0, 0.5, 0.0])


def test_plan_steps_matches_the_batches_each_worker_sees():
    from augscale.train.driver import TrainingError, plan_steps

    plan = plan_steps(n_train=401, num_workers=2, window=256, micro_batch_size=8, grad_accum=2, epochs=3,
                      max_steps=None)
    assert plan["rows_per_worker"] == 200 and plan["micro_batches_per_epoch"] == 25
    assert plan["steps_per_epoch"] == 12 and plan["total_steps"] == 36
    assert plan_steps(n_train=401, num_workers=2, window=256, micro_batch_size=8, grad_accum=2, epochs=1,
                      max_steps=30)["epochs"] == 3
    with pytest.raises(TrainingError, match="no optimizer step"):
        plan_steps(n_train=10, num_workers=2, window=256, micro_batch_size=8, grad_accum=4, epochs=1, max_steps=None)


# --- the loop without Ray ----------------------------------------------------------------------
def test_plain_loop_learns_and_resumes_exactly(tiny_model, tokenizer, records, tmp_path):
    """The Ray-free step with DeepSpeed ZeRO-2 (one process): loss falls; a checkpoint restores
    model, optimizer and lr schedule so the next steps repeat to the digit."""
    from augscale.train.checkpoint import load_checkpoint, save_checkpoint
    from augscale.train.deepspeed_config import build_ds_config
    from augscale.train.loop import LoopState, init_single_process, make_engine, train

    created = init_single_process()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a one-CPU Ray worker; several threads crawl on a shared 2-core machine
    cols = tokenize_records(tokenizer, TASK, records[:128], max_seq_len=512)
    cols["order"] = np.arange(128)
    ds_config = build_ds_config(zero_stage=2, micro_batch_size=8, grad_accum=2, world_size=1, precision="fp32",
                                clip_grad_norm=1.0)

    def engine():
        torch.manual_seed(0)
        model = load_model(tiny_model, tokenizer, end_token="<END_A>")
        return make_engine(model, ds_config=ds_config, lr=3e-3, total_steps=24, warmup_steps=2)

    def batches(epoch):
        return micro_batches(table_windows(cols, 64), micro_batch_size=8, pad_id=tokenizer.pad_token_id)

    try:
        first, logs = engine(), []
        state = train(first, batches, state=LoopState(), epochs=2, steps_per_epoch=8, grad_accum=2,
                      valid_batches=lambda: batches(0), log=logs.append,
                      end_epoch=lambda s, m: save_checkpoint(tmp_path / f"e{s.epoch}", first, tokenizer, s, rank=0))
        assert state.step == 16 and [h["epoch"] for h in state.history] == [1, 2]
        assert state.history[1]["valid_loss"] < state.history[0]["valid_loss"] < math.log(len(tokenizer))
        assert all(0.85 < m["real_token_share"] <= 1 and m["tokens_per_s"] > 0 for m in logs)
        again, replay = engine(), []
        resumed = load_checkpoint(tmp_path / "e1", again)
        assert (resumed.epoch, resumed.step) == (1, 8)
        train(again, batches, state=resumed, epochs=2, steps_per_epoch=8, grad_accum=2, log=replay.append)
        assert [m["loss"] for m in replay] == pytest.approx([m["loss"] for m in logs[8:]], rel=1e-6)
        assert [m["lr"] for m in replay] == pytest.approx([m["lr"] for m in logs[8:]])
    finally:
        torch.set_num_threads(threads)
        if created:
            torch.distributed.destroy_process_group()


def test_a_run_folder_holds_one_run(tmp_path):
    """Same settings and data: a finished run is reused, an unfinished one resumes; others are refused."""
    import json

    from augscale.train.driver import TrainingError, check_run_dir

    assert check_run_dir(tmp_path, "k1") is None  # a new folder
    (tmp_path / "manifest.json").write_text(json.dumps({"run_key": "k1"}))
    assert check_run_dir(tmp_path, "k1") is None  # unfinished: Ray Train resumes it
    (tmp_path / "summary.json").write_text(json.dumps({"run_key": "k1", "final": "x"}))
    assert check_run_dir(tmp_path, "k1")["final"] == "x"
    with pytest.raises(TrainingError, match="holds a run with other settings or data"):
        check_run_dir(tmp_path, "k2")
