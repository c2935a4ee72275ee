"""ViGGO: video-game sentences to meaning representations (MR), as in the case study.

Record: ``prompt`` the sentence; ``target`` and ``answer`` the MR,
``function(attr[value], attr[v1, v2], ...)``. Difficulty: the number of attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augscale.tasks.base import RawDataError, Task, Verdict, make_record, normalize_ws, read_csv

FUNCTIONS = (
    "inform", "request", "give_opinion", "confirm", "verify_attribute", "suggest",
    "request_explanation", "recommend", "request_attribute",
)
_FUNC_RE = re.compile(r"\s*([a-z_]+)\s*\(")
_ATTR_RE = re.compile(r"\s*([a-z_]+)\s*(\[|(?=,|\)|$))")


@dataclass
class MR:
    """A parsed meaning representation; ``attributes`` keeps the written order."""

    function: str
    attributes: list[tuple[str, str]]

    @property
    def names(self) -> list[str]:
        return [a for a, _ in self.attributes]

    def values(self, name: str) -> str | None:
        for a, v in self.attributes:
            if a == name:
                return v
        return None

    def render(self) -> str:
        parts = [f"{a}[{v}]" if v is not None else a for a, v in self.attributes]
        return f"{self.function}({', '.join(parts)})"


class MRParseError(ValueError):
    """Text that is not an MR."""


def parse_mr(text: str) -> MR:
    """Parse ``function(attr[value], ...)``; text after the closing parenthesis is ignored.

    Values may hold parentheses and commas (``esrb[E 10+ (for Everyone 10 and Older)]``):
    a value runs to its matching ``]``.

    Raises:
        MRParseError: no function name, unbalanced brackets, or no closing parenthesis.
    """
    m = _FUNC_RE.match(text)
    if not m:
        raise MRParseError(f"no function name in {text[:60]!r}")
    function, i, n = m.group(1), m.end(), len(text)
    attrs: list[tuple[str, str]] = []
    while True:
        while i < n and text[i] in " ,\n\t":
            i += 1
        if i >= n:
            raise MRParseError("missing closing parenthesis")
        if text[i] == ")":
            return MR(function, attrs)
        am = _ATTR_RE.match(text, i)
        if not am:
            raise MRParseError(f"bad attribute at {text[i:i + 30]!r}")
        name = am.group(1)
        i = am.end()
        if am.group(2) == "[":
            depth, start = 1, i
            while i < n and depth:
                depth += {"[": 1, "]": -1}.get(text[i], 0)
                i += 1
            if depth:
                raise MRParseError(f"unclosed '[' in attribute {name!r}")
            attrs.append((name, text[start:i - 1]))
        else:
            attrs.append((name, None))


def split_values(value: str) -> list[str]:
    """A multi-valued attribute's items: split at commas outside parentheses and brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:i])
            start = i + 1
    items.append(value[start:])
    return [v for v in items if v.strip()]


def value_set(value: str | None) -> frozenset[str]:
    """An attribute's value for comparison: a set of items, case-folded, whitespace collapsed."""
    if value is None:
        return frozenset()
    return frozenset(normalize_ws(v).lower() for v in split_values(value))


class ViggoTask(Task):
    name = "viggo"
    hub_id = "GEM/viggo"
    strategies = ("substitute", "rephrase", "verbalize")

    def raw_files(self, data_dir: Path) -> dict[str, list[Path]]:
        base = data_dir / "viggo" if (data_dir / "viggo").is_dir() else data_dir
        files = {s: [base / f"{s}.csv"] for s in ("train", "valid", "test")}
        for split, (p,) in files.items():
            if not p.is_file():
                raise RawDataError(f"{p}: viggo {split} file not found (expected train/valid/test.csv)")
        return files

    def read_raw_file(self, path: Path) -> list[dict[str, Any]]:
        rows = read_csv(path, required=("mr", "ref"))
        for i, r in enumerate(rows, 2):  # line 1 is the header
            try:
                parse_mr(r["mr"])
            except MRParseError as e:
                raise RawDataError(f"{path}:{i}: unparseable meaning representation ({e})") from None
        return rows

    def load_hub(self):
        import datasets

        ds = datasets.load_dataset(self.hub_id)
        names = {"train": "train", "validation": "valid", "test": "test"}
        return {names[s]: [{"mr": r["meaning_representation"], "ref": r["target"]} for r in ds[s]] for s in names}

    def to_record(self, raw, *, raw_split, index):
        mr = raw["mr"].strip()
        rec = make_record(id=f"viggo-{raw_split}-{index:05d}", task=self.name, split=raw_split,
                          prompt=raw["ref"].strip(), target=mr, answer=mr)
        rec["difficulty"] = self.difficulty(rec)
        return rec

    def assign_splits(self, raw_splits):
        return {s: raw_splits[s] for s in ("train", "valid", "test")}

    def extract_answer(self, text: str) -> str | None:
        cut = self.cut_target(text)
        try:
            return parse_mr(cut).render()
        except MRParseError:
            return None

    def score(self, prediction: str, reference: str, context: str | None = None) -> dict[str, Any]:
        """The case study's checks on the MR cut from the prediction (end token and trailing text ignored).

        ``correct`` = same function and same set of attribute names; ``order_correct``: the names
        in the reference's order; ``exact``: function, order and values (each a case-insensitive
        set of items). An unparseable prediction is false on every check.

        Raises:
            MRParseError: the reference is not an MR.
        """
        ref = parse_mr(reference)
        try:
            pred = parse_mr(self.cut_target(prediction))
        except MRParseError:
            return {"function_correct": False, "attributes_correct": False, "order_correct": False,
                    "exact": False, "correct": False}
        function_ok = pred.function == ref.function
        attrs_ok = set(pred.names) == set(ref.names)
        order_ok = pred.names == ref.names
        values_ok = order_ok and all(value_set(pv) == value_set(rv) for (_, pv), (_, rv)
                                     in zip(pred.attributes, ref.attributes))
        return {"function_correct": function_ok, "attributes_correct": attrs_ok, "order_correct": order_ok,
                "exact": function_ok and values_ok, "correct": function_ok and attrs_ok}

    def summarize(self, rows):
        out = super().summarize(rows)
        n = len(rows) or 1
        for key, col in (("function_accuracy", "function_correct"), ("attribute_accuracy", "attributes_correct"),
                         ("order_accuracy", "order_correct"), ("exact_match", "exact")):
            out[key] = sum(bool(r[col]) for r in rows) / n
        return out

    def verify(self, record):
        try:
            mr = parse_mr(record["target"])
        except MRParseError as e:
            return Verdict.reject("unparseable_mr", error=str(e))
        if mr.function not in FUNCTIONS:
            return Verdict.reject("unknown_function", function=mr.function)
        return Verdict(True, None, {"attributes": len(mr.attributes)})

    def difficulty(self, record):
        """The number of attributes in the MR."""
        try:
            return float(len(parse_mr(record["target"]).attributes))
        except MRParseError:
            return 0.0
