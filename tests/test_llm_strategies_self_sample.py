"""``self_sample`` (RFT) with a real local checkpoint through the batch engine of augscale.llm.hf.

The checkpoint is a tiny Llama fine-tuned for a few seconds to answer three questions in known
ways: one with a correct solution whose equations differ from the seed's (kept once, then
duplicates), one with a wrong answer, one with the seed's own solution."""

from __future__ import annotations

import json

import pytest

from augscale.augment.blocks import verify_candidate
from augscale.augment.strategies import Strategy, get_strategy
from augscale.tasks import get_task
from test_llm_strategies import NATALIA, WENG, WORDS

ALTERNATES = {
    NATALIA["id"]: "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn total: 24+48 = <<24+48=72>>72 clips.\n#### 72",
    WENG["id"]: "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nShe earned 0.2 x 40 = $<<0.2*40=8>>8.\n#### 8",
    WORDS["id"]: WORDS["target"],
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """At this size one thread is faster than two fighting for a loaded machine's cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tuned_model(tmp_path_factory, one_torch_thread):
    """A 2-layer, 64-wide Llama trained until it reproduces ALTERNATES (about 80 steps)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from augscale.train.model_init import init_small_model

    task = get_task("gsm8k")
    texts = [task.train_text({**s, "target": ALTERNATES[s["id"]]}) for s in (NATALIA, WENG, WORDS)]
    path = init_small_model(texts * 20, task.tokens.all(), tmp_path_factory.mktemp("rft-model"),
                            end_token=task.tokens.end_a, vocab_size=400, hidden_size=64, num_layers=2, num_heads=4,
                            max_position_embeddings=256)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    encoded = [tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
    labels = torch.full((len(encoded), width), -100)
    for i, e in enumerate(encoded):
        ids[i, :len(e)] = labels[i, :len(e)] = torch.tensor(e)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(90):
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.1
    model.save_pretrained(path)
    return path


def test_self_sample_keeps_correct_distinct_solutions(tuned_model):
    task = get_task("gsm8k")
    cls = get_strategy("self_sample", "gsm8k")
    kwargs = cls.init_kwargs(cls.Params.model_validate({"model_path": str(tuned_model), "samples": 3,
                                                        "temperature": 0.5, "max_new_tokens": 60}), {})
    strategy = cls(task, seed=0, **kwargs)
    rows = {c.index + 10 * i: verify_candidate(task, "self_sample", c)
            for i, seed in enumerate((NATALIA, WENG, WORDS)) for c in strategy.generate([seed])}
    assert {k: r["reject"] for k, r in rows.items()} == {
        0: None, 1: "duplicate_equations", 2: "duplicate_equations",   # correct, new equations: kept once
        10: "wrong_answer", 11: "wrong_answer", 12: "wrong_answer",
        20: "same_as_seed", 21: "same_as_seed", 22: "same_as_seed"}  # the seed's own equation list
    kept = rows[0]
    assert kept["target"] == ALTERNATES[NATALIA["id"]] and kept["answer"] == "72" and kept["prompt"] == NATALIA["prompt"]
    meta = json.loads(kept["meta"])["self_sample"]
    assert meta["equations"] == "48/2|24+48" and meta["checkpoint"] == kwargs["checkpoint"]
    # the cache key follows the checkpoint's content, not its folder; speed settings are left out
    assert "model_path" not in cls.cache_params(kwargs) and "micro_batch_size" not in cls.cache_params(kwargs)
    assert cls.ray_options(**{**kwargs, "num_gpus": 1, "actors": 2}) == {"num_cpus": 1, "num_gpus": 1,
                                                                          "concurrency": 2}


def test_self_sample_for_sql_uses_the_task_score():
    """Other tasks: correct by the task's own score; distinct by the normalized target."""
    task = get_task("sql")
    cls = get_strategy("self_sample", "sql")
    strategy = cls.__new__(cls)
    Strategy.__init__(strategy, task, seed=0, model_path="m", samples=3)  # no model: the samples are given
    seed = {"id": "sql-train-00000", "prompt": "How many heads of the departments are older than 56 ?",
            "context": "CREATE TABLE head (age INTEGER)", "target": "SELECT COUNT(*) FROM head WHERE age > 56",
            "answer": "SELECT COUNT(*) FROM head WHERE age > 56"}
    samples = [{"prediction": "SELECT COUNT(*) FROM head WHERE 56 < age<END_A>", "finish_reason": "stop"},
               {"prediction": "SELECT count(*) FROM head WHERE age > 56<END_A>", "finish_reason": "stop"},
               {"prediction": "SELECT COUNT(*) FROM head WHERE age >= 56<END_A>", "finish_reason": "stop"},
               {"prediction": "", "error": "generation failed"}]
    cands = strategy._keep(seed, samples)
    assert [(c.reason, c.target) for c in cands] == [
        (None, "SELECT COUNT(*) FROM head WHERE 56 < age"),
        ("same_as_seed", "SELECT count(*) FROM head WHERE age > 56"),
        ("incorrect", "SELECT COUNT(*) FROM head WHERE age >= 56"),
        ("generation_error", "")]
