"""The offline ``substitute`` strategies of gsm8k, viggo and sql: pure logic, no Ray."""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction


from augscale.augment.strategies import Candidate
from augscale.augment.substitute_gsm8k import GSM8kSubstitute, question_numbers, substitutable, parse_steps, render
from augscale.augment.substitute_sql import SQLSubstitute, literal_slots, string_values
from augscale.augment.substitute_viggo import ViggoSubstitute, attribute_values, replace_pieces
from augscale.tasks import get_task
from augscale.tasks.viggo import parse_mr

ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def recompute(expr: str) -> Fraction:
    """Independent of augscale.tasks.arith: whitelist the characters, then evaluate exactly."""
    e = expr.replace(",", "").replace("$", "").replace("x", "*").replace("%", "/100")
    assert re.fullmatch(r"[\d\s.+\-*/()]+", e), expr
    return eval(re.sub(r"(\d*\.?\d+)", r"Fraction('\1')", e), {"Fraction": Fraction})  # noqa: S307


def check_gsm8k_row(prompt: str, target: str, answer: str) -> None:
    steps = ANNOTATION.findall(target)
    assert steps, target
    for expr, stated in steps:
        assert recompute(expr) == Fraction(stated.replace(",", "").replace("$", "")), (expr, stated)
    assert target.rstrip().rsplit("####", 1)[1].strip() == answer
    assert Fraction(answer).denominator == 1 and Fraction(answer) >= 0


def _seed(i: int, question: str, solution: str) -> dict:
    return {"id": f"gsm8k-train-{i:05d}", "prompt": question, "target": solution, "answer": solution.rsplit("#", 1)[1]}


NATALIA = _seed(0, "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                   "How many clips did Natalia sell altogether in April and May?",
                "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                "altogether in April and May.\n#### 72")


def test_gsm8k_substitute_rewrites_question_steps_and_answer():
    s = GSM8kSubstitute(get_task("gsm8k"), seed=0, variants_per_seed=3)
    cands = list(s.generate([NATALIA]))
    assert [c.index for c in cands] == [0, 1, 2] and all(c.reason is None for c in cands)
    for c in cands:
        new = int(re.search(r"to (\d+) of", c.prompt).group(1))
        assert new != 48 and "half as many" in c.prompt  # "half" implies 2, which stays
        assert f"<<{new}/2={new // 2}>>" in c.target and c.answer == str(new + new // 2)
        assert f"{new}/2 = " in c.target  # the prose restating the step follows
        check_gsm8k_row(c.prompt, c.target, c.answer)
    assert len({c.prompt for c in cands}) == 3
    # Deterministic: the same seed row and run seed give the same variants, in any block.
    again = list(GSM8kSubstitute(get_task("gsm8k"), seed=0, variants_per_seed=3).generate([_seed(9, "x", "#### 1"),
                                                                                            NATALIA]))
    assert [c.prompt for c in again if c.parent_id == NATALIA["id"]] == [c.prompt for c in cands]


def test_gsm8k_what_may_change():
    q = "Tom buys 3/4 of a pie at 3:00 on the 2nd day, 12 eggs, and 5 more eggs. He pays $1,200.50 for 20% of it."
    written = {n.value for n in question_numbers(q)}
    assert written == {Fraction(12), Fraction(5), Fraction("1200.50"), Fraction(20)}  # not 3/4, 3:00, 2nd
    # "twice" implies 2: a question "2" is never substituted; a value that is also a result neither.
    sol = "He has 2*2=<<2*2=4>>4 and 4+4=<<4+4=8>>8\n#### 8"
    assert substitutable("She has 2 cats and twice as many dogs, and 4 birds.", parse_steps(sol)) == []
    assert render(Fraction(8), "7.50") == "8.00" and render(Fraction(1, 4), "0.2") == "0.25"
    assert render(Fraction(1, 3), "2") is None and render(Fraction(12345), "1,200") == "12,345"


def test_gsm8k_rejections_are_counted_with_reasons():
    s = GSM8kSubstitute(get_task("gsm8k"), seed=0, variants_per_seed=2, max_tries=5)
    no_number = _seed(1, "Half of all apples are red. How many are red if there are ten?", "10/2=<<10/2=5>>5\n#### 5")
    rounded = _seed(2, "Split 10 apples among 3 people.", "10/3=<<10/3=3.33>>3.33\n#### 3.33")
    signed = _seed(4, "Temperatures were -14 degrees, -8 degrees and +1 degree. What was the average?",
                   "-14 + (-8) + 1 = <<-14+-8+1=-21>>-21\n-21/3 = <<-21/3=-7>>-7\n#### -7")
    out = list(s.generate([no_number, rounded, signed]))
    assert [(c.parent_id, c.index, c.reason) for c in out] == [
        (no_number["id"], 0, "no_substitutable_number"), (no_number["id"], 1, "no_substitutable_number"),
        (rounded["id"], 0, "seed_not_exact"), (rounded["id"], 1, "seed_not_exact"),
        (signed["id"], 0, "negative_numbers"), (signed["id"], 1, "negative_numbers")]
    # Kinds are kept: integer results stay integers (20/8 would be 2.5), so a variant of this
    # seed never has a non-integer step, and failures say why.
    pens = _seed(3, "20 pens are shared by 4 kids. How many each?", "20/4=<<20/4=5>>5\n#### 5")
    reasons = Counter(c.reason for c in GSM8kSubstitute(get_task("gsm8k"), seed=1, variants_per_seed=20,
                                                         max_tries=2).generate([pens]))
    assert set(reasons) <= {None, "non_integer_result", "no_new_variant", "value_collision"} and reasons[None] > 0


def test_gsm8k_substitute_on_real_seeds_every_step_recomputes(data_dir):
    task = get_task("gsm8k")
    lines = (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:300]
    seeds = [task.to_record(json.loads(line), raw_split="train", index=i) for i, line in enumerate(lines)]
    cands = list(GSM8kSubstitute(task, seed=0, variants_per_seed=2).generate(seeds))
    assert len(cands) == 600
    kept = [c for c in cands if c.reason is None]
    assert len(kept) > 300
    for c in kept:
        check_gsm8k_row(c.prompt, c.target, c.answer)
        assert task.verify({"target": c.target, "answer": c.answer}).ok


def test_viggo_substitute_swaps_values_in_mr_and_sentence():
    seeds = [
        {"id": "viggo-train-00000", "prompt": "Tetris is an average puzzle game from 1984 for PC and Nintendo.",
         "target": "inform(name[Tetris], release_year[1984], rating[average], genres[puzzle], "
                   "platforms[PC, Nintendo])"},
        {"id": "viggo-train-00001", "prompt": "Doom from 1993 is a good shooter on PlayStation and Xbox.",
         "target": "inform(name[Doom], release_year[1993], rating[good], genres[shooter], "
                   "platforms[PlayStation, Xbox], has_multiplayer[yes])"},
    ]
    vocab = attribute_values(s["target"] for s in seeds)
    assert vocab["platforms"] == ["PC, Nintendo", "PlayStation, Xbox"] and "has_multiplayer" not in vocab
    out = list(ViggoSubstitute(get_task("viggo"), seed=0, resources={"values": vocab}).generate(seeds))
    # One other value per attribute: the second variant of a seed would repeat the first.
    assert [c.reason for c in out] == [None, "no_new_variant", None, "no_new_variant"]
    first = out[0]
    mr = parse_mr(first.target)
    assert mr.values("name") == "Doom" and mr.values("release_year") == "1993" and mr.values("rating") == "good"
    assert first.prompt == "Doom is a good shooter game from 1993 for PlayStation and Xbox."  # "an" -> "a"
    for old in ("Tetris", "1984", "average", "puzzle", "PC", "Nintendo"):
        assert old not in first.prompt
    assert get_task("viggo").verify({"target": first.target}).ok
    assert replace_pieces("Action games like Halo", {"action": "shooter", "Halo": "Doom"}) == "Shooter games like Doom"


def test_viggo_rejects_when_nothing_verbatim():
    seed = {"id": "viggo-train-00007", "prompt": "Is it on Steam?", "target": "confirm(available_on_steam[yes])"}
    out = list(ViggoSubstitute(get_task("viggo"), seed=0, resources={"values": {}}).generate([seed]))
    assert [c.reason for c in out] == ["no_verbatim_value", "no_verbatim_value"]


def test_sql_substitute_changes_literal_in_query_and_question():
    task = get_task("sql")
    seeds = [
        {"id": "sql-train-00000", "prompt": "How many heads of the departments are older than 56 ?",
         "context": "CREATE TABLE head (age INTEGER)", "target": "SELECT COUNT(*) FROM head WHERE age > 56"},
        {"id": "sql-train-00001", "prompt": "Which heads were born in state 'Alabama'?",
         "context": "CREATE TABLE head (name VARCHAR, born_state VARCHAR)",
         "target": "SELECT name FROM head WHERE born_state = 'Alabama'"},
        {"id": "sql-train-00002", "prompt": "List the names of heads born in California.",
         "context": "CREATE TABLE head (name VARCHAR, born_state VARCHAR)",
         "target": "SELECT name FROM head WHERE born_state = \"California\""},
        {"id": "sql-train-00003", "prompt": "List all department names.",
         "context": "CREATE TABLE department (name VARCHAR)", "target": "SELECT name FROM department"},
    ]
    assert literal_slots(seeds[0]["prompt"], seeds[0]["target"]) == [{"kind": "number", "text": "56", "column": "age"}]
    strings = string_values(s["target"] for s in seeds)
    assert strings == {"born_state": ["Alabama", "California"]}
    out = list(SQLSubstitute(task, seed=0, resources={"strings": strings}, variants_per_seed=1).generate(seeds))
    by_parent = {c.parent_id: c for c in out}
    num = by_parent["sql-train-00000"]
    new = re.search(r"older than (\d+)", num.prompt).group(1)
    assert num.reason is None and new != "56" and num.target == f"SELECT COUNT(*) FROM head WHERE age > {new}"
    assert num.context == seeds[0]["context"] and max(num.evidence["result_rows"]) > 0
    swapped = by_parent["sql-train-00001"]
    assert swapped.prompt == "Which heads were born in state 'California'?"
    assert swapped.target == "SELECT name FROM head WHERE born_state = 'California'"
    assert by_parent["sql-train-00002"].target == 'SELECT name FROM head WHERE born_state = "Alabama"'
    assert by_parent["sql-train-00003"].reason == "no_substitutable_literal"
    for c in out:
        if c.reason is None:
            assert task.verify({"target": c.target}).ok


def test_candidate_reject_helper():
    c = Candidate.reject("p", 2, "why", detail=1)
    assert (c.parent_id, c.index, c.reason, c.evidence, c.prompt) == ("p", 2, "why", {"detail": 1}, None)
