"""Scoring rules of each task (gsm8k extraction, viggo parsing, jsonl) and the `augscale score` command.

The SQL sandbox and near-miss cases are in test_sqlexec.py; here sql is checked through the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from augscale.evaluate.scoring import PredictionFileError, score_file
from augscale.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
GSM8K = get_task("gsm8k")
VIGGO = get_task("viggo")


# ----- gsm8k ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction, reference, extracted, strict, flexible", [
    ("She pays 2*3 = 6.\n#### 6", "6", "6", True, True),
    ("#### 5.00", "5", "5.00", True, True),                       # compared as numbers
    ("#### $1,234.", "1234", "1234", True, True),                 # comma, leading $, trailing .
    ("#### $ 1,234.50", "1234.5", "1234.50", True, True),
    ("#### -3", "-3", "-3", True, True),
    ("#### 7 #### 8", "8", "7", False, True),                     # the first ####; flexible: last number
    ("The answer is 42.", "42", None, False, True),               # no ####: strict fails, flexible finds it
    ("#### the answer is 42", "42", None, False, True),           # no number right after ####
    ("x = 3 then 4\n#### 12<END_A> #### 99 and 100", "12", "12", True, True),  # after the end token: ignored
    ("<START_Q>q 7<END_Q><START_A>so 5\n#### 5", "5", "5", True, True),  # the echoed prompt is cut off
    ("no numbers at all", "5", None, False, False),
    ("#### 1,000,000", "Natalia sold 48/2 = <<48/2=24>>24.\n#### 1000000", "1000000", True, True),  # full solution
])
def test_gsm8k_strict_and_flexible(prediction, reference, extracted, strict, flexible):
    s = GSM8K.score(prediction, reference)
    assert (s["extracted"], s["correct"], s["correct_flexible"]) == (extracted, strict, flexible)


def test_gsm8k_summary_and_bad_reference():
    rows = [GSM8K.score(p, "6") for p in ("#### 6", "6", "#### 7", "#### 6.0")]
    out = GSM8K.summarize(rows)
    assert out["accuracy"] == 0.5 and out["accuracy_flexible"] == 0.75 and out["n"] == 4
    lo, hi = out["ci95"]
    assert 0 < lo < 0.5 < hi < 1
    with pytest.raises(ValueError, match="neither a number"):
        GSM8K.score("#### 6", "six")


# ----- viggo ---------------------------------------------------------------------------------
REF = "inform(name[Dirt: Showdown], esrb[E 10+ (for Everyone 10 and Older)], genres[driving/racing, sport])"


@pytest.mark.parametrize("prediction, expected", [
    (REF, (True, True, True, True)),
    # the end token and anything after the MR are ignored
    (REF + "<END_A>garbage(x[y])", (True, True, True, True)),
    (REF + " and some chatter", (True, True, True, True)),
    # values: case, whitespace, and multi-valued lists as sets
    ("inform(name[dirt:  showdown], esrb[e 10+ (FOR everyone 10 and older)], genres[sport, driving/racing])",
     (True, True, True, True)),
    # another order of the same attributes: correct, but not order_correct nor exact
    ("inform(genres[driving/racing, sport], name[Dirt: Showdown], esrb[E 10+ (for Everyone 10 and Older)])",
     (True, True, False, False)),
    # a wrong value: the case study's check passes, exact does not
    ("inform(name[Dirt: Showdown], esrb[M (for Mature)], genres[driving/racing, sport])", (True, True, True, False)),
    # a missing attribute
    ("inform(name[Dirt: Showdown], genres[driving/racing, sport])", (True, False, False, False)),
    # another function
    ("request(name[Dirt: Showdown], esrb[E 10+ (for Everyone 10 and Older)], genres[driving/racing, sport])",
     (False, True, True, False)),
    # unparseable: false everywhere
    ("inform(name[Dirt: Showdown], esrb[E 10+", (False, False, False, False)),
    ("Sure! Here it is: inform(name[Dirt: Showdown])", (False, False, False, False)),
    ("", (False, False, False, False)),
])
def test_viggo_checks(prediction, expected):
    s = VIGGO.score(prediction, REF)
    assert (s["function_correct"], s["attributes_correct"], s["order_correct"], s["exact"]) == expected
    assert s["correct"] == (expected[0] and expected[1])


def test_viggo_value_with_comma_inside_parentheses_is_one_item():
    ref = "inform(name[X], esrb[M (for Mature, 17+)])"
    assert VIGGO.score("inform(name[X], esrb[m (for mature, 17+)])", ref)["exact"]
    # split inside the parentheses would make {"m (for mature", "17+)"} match a reordered value
    assert not VIGGO.score("inform(name[X], esrb[17+), M (for Mature])", ref)["exact"]


def test_viggo_summary_keys():
    rows = [VIGGO.score(REF, REF), VIGGO.score("nonsense", REF)]
    out = VIGGO.summarize(rows)
    assert out["accuracy"] == out["function_accuracy"] == out["attribute_accuracy"] == 0.5
    assert out["order_accuracy"] == out["exact_match"] == 0.5 and out["n"] == 2 and len(out["ci95"]) == 2


# ----- jsonl ---------------------------------------------------------------------------------
def test_jsonl_exact_match_after_whitespace_normalization():
    task = get_task("jsonl")
    assert task.score("  the   answer\n is 4 <END_A> junk", "the answer is 4")["correct"]
    assert not task.score("the answer is 5", "the answer is 4")["correct"]
    assert not task.score("The answer is 4", "the answer is 4")["correct"]  # case matters


# ----- augscale score ------------------------------------------------------------------------
def run_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augscale.cli", "score", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_score_command_gsm8k_summary_and_rows(tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "prediction": "so #### 18<END_A>", "reference": "18"},
        {"id": "b", "prediction": "I think 3", "reference": "3"},
        {"id": 3, "prediction": "#### 4", "reference": "Blah <<2*2=4>>4\n#### 5"},
    ])
    res = run_score("gsm8k", str(preds), "--out", str(tmp_path / "rows.jsonl"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    summary = json.loads(lines[0])
    assert summary["n"] == 3 and summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["accuracy_flexible"] == pytest.approx(2 / 3) and len(summary["ci95"]) == 2
    rows = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", 3]  # input order
    assert rows[0] == {"id": "a", "extracted": "18", "correct": True, "correct_flexible": True}
    assert rows[1]["extracted"] is None and rows[1]["correct_flexible"] and not rows[2]["correct"]


@pytest.mark.parametrize("bad_line, message", [
    ('{"id": "b", "prediction": "x"', "malformed JSON"),
    ('{"id": "b", "prediction": "x"}', "missing field(s) ['reference']"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"id": "b", "prediction": null, "reference": "1"}', "'prediction' must be a string"),
    ('{"id": "b", "prediction": "#### 1", "reference": "one"}', "neither a number"),
])
def test_score_command_malformed_line_named(tmp_path, bad_line, message):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "#### 1", "reference": "1"}, "", bad_line])
    with pytest.raises(PredictionFileError) as e:
        score_file(GSM8K, preds)
    assert str(e.value).startswith(f"{preds}:3:") and message in str(e.value)


def test_score_command_exit_code_on_malformed_line(tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "x", "reference": "1"}, "{oops"])
    res = run_score("gsm8k", str(preds))
    assert res.returncode != 0 and f"{preds}:2: malformed JSON" in res.stderr and res.stdout == ""


def test_score_command_viggo_and_sql(tmp_path):
    preds = write_jsonl(tmp_path / "v.jsonl", [
        {"id": 1, "prediction": REF + "<END_A>", "reference": REF},
        {"id": 2, "prediction": "inform(name[Dirt: Showdown])", "reference": REF},
    ])
    summary = score_file(VIGGO, preds)
    assert summary["task"] == "viggo" and summary["accuracy"] == 0.5 and summary["exact_match"] == 0.5
    ctx = "CREATE TABLE head (age INTEGER, name VARCHAR)"
    ref = "SELECT name FROM head WHERE age > 56"
    preds = write_jsonl(tmp_path / "s.jsonl", [
        {"id": 1, "prediction": "<SQL>SELECT name FROM head WHERE 56 < age</SQL>", "reference": ref, "context": ctx},
        {"id": 2, "prediction": "SELECT name FROM head WHERE age >= 56<END_A>", "reference": ref, "context": ctx},
        {"id": 3, "prediction": "DROP TABLE head", "reference": ref, "context": ctx},
        {"id": 4, "prediction": "SELECT name FROM head", "reference": "SELECT name FROM head", "context": ctx},
    ])
    res = run_score("sql", str(preds), "--out", str(tmp_path / "rows.jsonl"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n"] == 4 and summary["execution_accuracy"] == pytest.approx(2 / 4)
    assert summary["exact_match"] == pytest.approx(1 / 4)
    assert summary["degenerate_references"] == 1  # item 4 returns the whole table on every database
    rows = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False, False, True]
    assert rows[0]["error"] is None and rows[1]["error"] and rows[2]["error"]
    assert set(rows[0]) >= {"id", "exact", "execution_correct", "correct", "error"}
    missing_ctx = write_jsonl(tmp_path / "m.jsonl", [{"id": 1, "prediction": ref, "reference": ref}])
    with pytest.raises(PredictionFileError, match="missing field"):
        score_file(get_task("sql"), missing_ctx)
