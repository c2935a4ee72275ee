"""Task definitions: formatting with special tokens, cutting answers back out, difficulty."""

from __future__ import annotations

import pytest

from augscale.datasets_cache import prepare
from augscale.tasks import get_task
from augscale.tasks.arith import check_annotations
from augscale.tasks.viggo import MRParseError, parse_mr


@pytest.mark.parametrize("name", ["gsm8k", "viggo", "sql"])
def test_format_then_extract_gives_the_answer(name, data_dir, cache_dir):
    task = get_task(name)
    snap, _ = prepare(task, data_dir=data_dir, cache_dir=cache_dir)
    for rec in snap.scan("train").head(200).collect().to_dicts():
        text = task.train_text(rec)
        t = task.tokens
        assert text.startswith(t.start_q) and text.endswith(t.end_a)
        assert text.index(t.end_q) < text.index(t.start_a)
        extracted = task.extract_answer(text)
        assert task.score(text, rec["answer"], rec["context"])["correct"], (name, rec["id"], extracted)
        if name != "sql":
            assert extracted == rec["answer"]
        else:
            assert extracted == rec["answer"].rstrip(";")
            assert text.startswith(f"{t.start_q}{rec['context']}\n{rec['prompt']}{t.end_q}")


def test_jsonl_format_and_extract():
    task = get_task("jsonl", input_col="q", target_col="a")
    rec = task.to_record({"q": "2+2?", "a": "four"}, raw_split="train", index=0)
    text = task.train_text(rec)
    assert text == "<START_Q>2+2?<END_Q><START_A>four<END_A>"
    assert task.extract_answer(text) == "four"
    assert task.score(text + " trailing", "four")["correct"]


def test_gsm8k_difficulty_counts_calculator_steps():
    task = get_task("gsm8k")
    rec = task.to_record({"question": "q", "answer": "a <<2*3=6>>6 b <<6+1=7>>7\n#### 7"}, raw_split="train", index=0)
    assert rec["difficulty"] == 2 and rec["answer"] == "7"


def test_every_gsm8k_training_annotation_verifies(gsm8k_snapshot):
    """The safe evaluator agrees with (almost) every human-written annotation."""
    df = gsm8k_snapshot.read("train")
    bad = [t for t in df["target"] if not check_annotations(t)[0]]
    assert len(bad) / df.height < 0.02, bad[:3]


def test_viggo_parse_values_with_parentheses_and_commas():
    mr = parse_mr("inform(name[Dirt: Showdown], esrb[E 10+ (for Everyone 10 and Older)], "
                  "genres[driving/racing, sport], rating[good]) trailing text")
    assert mr.function == "inform"
    assert mr.names == ["name", "esrb", "genres", "rating"]
    assert mr.values("esrb") == "E 10+ (for Everyone 10 and Older)"
    assert mr.values("genres") == "driving/racing, sport"
    with pytest.raises(MRParseError):
        parse_mr("inform(name[Dirt: Showdown")
    with pytest.raises(MRParseError):
        parse_mr("no mr here")


def test_viggo_difficulty_is_attribute_count():
    task = get_task("viggo")
    rec = task.to_record({"mr": "request(name[X], genres[a, b])", "ref": "s"}, raw_split="train", index=0)
    assert rec["difficulty"] == 2


def test_sql_difficulty_rises_with_structure():
    task = get_task("sql")
    easy = task.to_record({"question": "q", "context": "CREATE TABLE t (a VARCHAR)", "answer": "SELECT a FROM t"},
                          raw_split="train", index=0)
    hard = task.to_record({"question": "q", "context": "CREATE TABLE t (a VARCHAR, b INTEGER), CREATE TABLE u (a VARCHAR)",
                           "answer": "SELECT t.a, COUNT(*) FROM t JOIN u ON t.a = u.a WHERE t.b > 3 GROUP BY t.a "
                                     "HAVING COUNT(*) > 1 ORDER BY t.a"}, raw_split="train", index=1)
    assert hard["difficulty"] > easy["difficulty"] >= 0


def test_unknown_task_lists_valid_names():
    from augscale.tasks import UnknownNameError

    with pytest.raises(UnknownNameError) as e:
        get_task("vigo")
    assert "Did you mean 'viggo'?" in str(e.value) and "gsm8k" in str(e.value)
