"""GSM8k: grade-school math word problems with calculator-annotated solutions.

Record: ``prompt`` the question; ``target`` the solution with ``<<a*b=c>>`` annotations
ending in ``#### n``; ``answer`` the final number n. Difficulty: the number of calculator
steps (annotations) in the solution.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from augscale.tasks.arith import NUMBER_RE, annotations, check_annotations, parse_number
from augscale.tasks.base import RawDataError, Task, Verdict, make_record, read_jsonl, stable_bucket

# The number right after a ``####``: sign, ``$``, digits with thousands commas, decimals; a
# trailing ``.`` (end of sentence) is left out.
FINAL_RE = re.compile(r"\s*(-?\$?\s*-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))")
VALID_SHARE = 0.05


def final_answer(solution: str) -> str | None:
    """The number after the first ``####`` (commas, a leading ``$`` and a trailing ``.`` allowed).

    None when there is no ``####`` or the first one is not followed by a number (strict:
    a later ``####`` is not searched, as the answer format promises one).
    """
    at = solution.find("####")
    if at < 0:
        return None
    m = FINAL_RE.match(solution, at + 4)
    if not m:
        return None
    return m.group(1).replace(",", "").replace("$", "").replace(" ", "").rstrip(".")


def reference_number(reference: str) -> str:
    """A gsm8k reference (a bare number, or a solution ending in ``#### n``) -> the number.

    Raises:
        ValueError: neither form.
    """
    ref = final_answer(reference) if "####" in reference else reference.strip().replace(",", "").replace("$", "")
    if ref is None or parse_number(ref) is None:
        raise ValueError(f"gsm8k reference {reference[:60]!r} is neither a number nor a solution ending in '#### n'")
    return ref


def last_number(text: str) -> str | None:
    """The last number in the text (lm-evaluation-harness's flexible extract)."""
    found = NUMBER_RE.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").replace("$", "").rstrip(".")


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Numeric equality of two answer strings (``5.00`` equals ``5``)."""
    if a is None or b is None:
        return False
    x, y = parse_number(a), parse_number(b)
    return x is not None and y is not None and x == y


class GSM8kTask(Task):
    name = "gsm8k"
    hub_id = "openai/gsm8k"
    hub_config = "main"
    strategies = ("substitute", "answer_augment", "rephrase", "backward", "evolve", "self_sample")

    def raw_files(self, data_dir: Path) -> dict[str, list[Path]]:
        base = data_dir / "gsm8k" if (data_dir / "gsm8k").is_dir() else data_dir
        files = {"train": [base / "train.jsonl"], "test": [base / "test.jsonl"]}
        for split, paths in files.items():
            for p in paths:
                if not p.is_file():
                    raise RawDataError(f"{p}: gsm8k {split} file not found (expected train.jsonl and test.jsonl)")
        return files

    def read_raw_file(self, path: Path) -> list[dict[str, Any]]:
        rows = read_jsonl(path, required=("question", "answer"))
        for i, r in enumerate(rows, 1):
            if final_answer(r["answer"]) is None:
                raise RawDataError(f"{path}:{i}: the answer has no '#### n' final line")
        return rows

    def to_record(self, raw: dict[str, Any], *, raw_split: str, index: int) -> dict[str, Any]:
        target = raw["answer"].strip()
        rec = make_record(
            id=f"gsm8k-{raw_split}-{index:05d}", task=self.name, split=raw_split,
            prompt=raw["question"].strip(), target=target, answer=self.answer_from_target(target),
        )
        rec["difficulty"] = self.difficulty(rec)
        return rec

    def assign_splits(self, raw_splits):
        # test: the official 1,319; valid: a deterministic 5% of the official train.
        out = {"train": [], "valid": [], "test": list(raw_splits["test"])}
        for rec in raw_splits["train"]:
            split = "valid" if stable_bucket(rec["id"], "gsm8k-valid") < VALID_SHARE else "train"
            out[split].append(rec)
        for split, recs in out.items():
            for r in recs:
                r["split"] = split
        return out

    def answer_from_target(self, target: str) -> str:
        return final_answer(target) or ""

    def extract_answer(self, text: str) -> str | None:
        return final_answer(self.cut_target(text))

    def score(self, prediction: str, reference: str, context: str | None = None) -> dict[str, Any]:
        """Strict: number after the first ``####``; flexible: the last number. Compared numerically.

        Both read the generated answer only (after START_A, before the end token), as
        lm-evaluation-harness's strict-match and flexible-extract do, but compare numbers
        (``5.00`` equals ``5``) rather than strings.

        Raises:
            ValueError: the reference is neither a number nor a solution ending in ``#### n``.
        """
        ref = reference_number(reference)
        cut = self.cut_target(prediction)
        extracted = final_answer(cut)
        flexible = last_number(cut)
        return {
            "extracted": extracted,
            "correct": numbers_equal(extracted, ref),
            "correct_flexible": numbers_equal(flexible, ref),
        }

    def summarize(self, rows):
        out = super().summarize(rows)
        n = len(rows)
        out["accuracy_flexible"] = sum(bool(r["correct_flexible"]) for r in rows) / n if n else 0.0
        return out

    def verify(self, record: dict[str, Any]) -> Verdict:
        """Every annotation recomputes, and ``#### n`` is present and equals the record's answer."""
        target = record.get("target") or ""
        final = final_answer(target)
        if final is None:
            return Verdict.reject("no_final_answer")
        ok, reason, steps = check_annotations(target)
        if not ok:
            return Verdict(False, reason, {"steps": steps})
        if record.get("answer") and not numbers_equal(final, record["answer"]):
            return Verdict(False, "wrong_answer", {"steps": steps, "final": final})
        return Verdict(True, None, {"steps": len(steps), "final": final})

    def difficulty(self, record: dict[str, Any]) -> float:
        """The number of calculator steps (``<<...>>`` annotations) in the solution."""
        return float(len(annotations(record["target"])))
