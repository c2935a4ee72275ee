"""The local HF engine on the tiny model: left-padded batches, stops, sampling, reference loss, Ray Data."""

from __future__ import annotations

import math

import pytest

from augscale.llm.hf import generate, generate_local, load_model, reference_nll, split_stops
from augscale.llm.raydata import map_batches

QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "A train travels 60 miles per hour for 2 hours. How far does it go?",
    "Sara had 10 dollars.",
    "What is 7 times 8?",
]


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model, device="cpu")


def prompts():
    return [f"<START_Q>{q}<END_Q><START_A>" for q in QUESTIONS]


def test_end_token_and_eos_are_stop_ids(model):
    m, tok = model
    ids, strings = split_stops(tok, m, ["<END_A>", "\n\nQuestion:"])
    assert tok.convert_tokens_to_ids("<END_A>") in ids and strings == ["\n\nQuestion:"]


def test_batched_greedy_equals_one_at_a_time(model):
    """Left padding and the attention mask make a prompt's output independent of its batch-mates."""
    m, tok = model
    batched = generate(m, tok, prompts(), max_new_tokens=12, stop_tokens=["<END_A>"])
    single = [generate(m, tok, [p], max_new_tokens=12, stop_tokens=["<END_A>"])[0] for p in prompts()]
    assert [b[0]["prediction"] for b in batched] == [s[0]["prediction"] for s in single]
    row = batched[0][0]
    assert row["sample_index"] == 0 and row["error"] is None and row["prompt_tokens"] > 10
    assert row["finish_reason"] == "length" and row["output_tokens"] == 12  # random weights never stop


def test_stops_at_stop_token_and_excludes_it(model):
    m, tok = model
    free = generate(m, tok, prompts()[:1], max_new_tokens=10)[0][0]
    ids = tok(prompts()[0])["input_ids"]
    full = m.generate(input_ids=__import__("torch").tensor([ids]), max_new_tokens=10, do_sample=False,
                      pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
    stop_tok = tok.convert_ids_to_tokens(full[3])  # make the 4th generated token the "end token"
    first = full.index(full[3])
    out = generate(m, tok, prompts()[:1], max_new_tokens=10, stop_tokens=[stop_tok])[0][0]
    assert out["finish_reason"] == "stop" and out["output_tokens"] == first + 1  # the stop token is counted
    assert out["prediction"] == tok.decode(full[:first], skip_special_tokens=False)  # ... but not in the text
    assert free["prediction"].startswith(out["prediction"])


def test_fixed_length_and_stop_strings(model):
    m, tok = model
    out = generate(m, tok, prompts(), max_new_tokens=9, min_new_tokens=9, stop_tokens=["<END_A>"])
    assert all(o[0]["output_tokens"] == 9 for o in out)
    text = out[1][0]["prediction"]
    cut = text[len(text) // 2:len(text) // 2 + 3]
    stopped = generate(m, tok, prompts()[1:2], max_new_tokens=9, stop_strings=[cut])[0][0]
    assert stopped["finish_reason"] == "stop" and cut not in stopped["prediction"]
    assert text.startswith(stopped["prediction"])


def test_sampling_k_per_prompt_reproducible(model):
    m, tok = model
    a = generate(m, tok, prompts()[:2], max_new_tokens=8, temperature=1.0, num_samples=3, seed=7)
    b = generate(m, tok, prompts()[:2], max_new_tokens=8, temperature=1.0, num_samples=3, seed=7)
    assert [len(x) for x in a] == [3, 3] and [s["sample_index"] for s in a[0]] == [0, 1, 2]
    assert len({s["prediction"] for s in a[0]}) > 1  # samples differ
    assert [[s["prediction"] for s in x] for x in a] == [[s["prediction"] for s in x] for x in b]
    with pytest.raises(ValueError, match="temperature > 0"):
        generate(m, tok, prompts()[:1], max_new_tokens=4, num_samples=2)


def test_long_prompts_keep_their_end(model):
    m, tok = model
    long = "<START_Q>" + "one two three " * 400 + "<END_Q><START_A>"
    out = generate(m, tok, [long, prompts()[0]], max_new_tokens=4)
    assert out[0][0]["prompt_truncated"] and out[0][0]["prompt_tokens"] == 512 - 4
    assert not out[1][0]["prompt_truncated"]


def test_reference_nll_batched_equals_unbatched(model):
    import torch

    m, tok = model
    conts = ["He has 3 + 4 = 7 apples.\n#### 7<END_A>", "60*2=120\n#### 120<END_A>", "#### 10<END_A>", "56<END_A>"]
    batched = reference_nll(m, tok, prompts(), conts)
    for p, c, (nll, n) in zip(prompts(), conts, batched):
        p_ids, c_ids = tok(p)["input_ids"], tok(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + c_ids])
        with torch.no_grad():
            logits = m(input_ids=ids).logits[0, len(p_ids) - 1:-1]
        manual = torch.nn.functional.cross_entropy(logits, torch.tensor(c_ids), reduction="sum").item()
        assert n == len(c_ids) and nll == pytest.approx(manual, rel=1e-4)
        # a random model is near-uniform: about ln(vocab) nats per token
        assert abs(nll / n - math.log(len(tok))) < 1.0


def test_map_batches_helper(ray_session):
    import ray.data

    def double(batch):
        return {"x": batch["x"] * 2}

    class AddOffset:
        def __init__(self, offset):
            self.offset = offset

        def __call__(self, batch):
            return {"x": batch["x"] + self.offset}

    ds = ray.data.range(10).rename_columns({"id": "x"})
    got = map_batches(ds, double, batch_size=4, concurrency=2)
    got = map_batches(got, AddOffset, batch_size=4, concurrency=(1, 2), fn_constructor_kwargs={"offset": 1})
    assert sorted(r["x"] for r in got.take_all()) == [2 * i + 1 for i in range(10)]
    with pytest.raises(ValueError, match="only for a callable class"):
        map_batches(ds, double, batch_size=4, fn_constructor_kwargs={"offset": 1})


def test_generate_local_actor_pool_samples_in_order(tiny_model, ray_session):
    """The RFT use: k sampled continuations per prompt, returned grouped by prompt in input order."""
    rows = [{"id": f"q{i}", "prompt": p, "target": "#### 1<END_A>"} for i, p in enumerate(prompts())]
    out = generate_local(rows, tiny_model, batch_size=2, max_new_tokens=6, temperature=0.8, num_samples=2,
                         stop_tokens=["<END_A>"], continuation_col="target", device="cpu")
    assert [(r["id"], r["sample_index"]) for r in out] == [(f"q{i}", k) for i in range(4) for k in range(2)]
    assert all(r["output_tokens"] <= 6 and r["ref_tokens"] > 0 and r["ref_nll"] > 0 for r in out)
    assert out[0]["target"] == "#### 1<END_A>"  # input columns are kept
