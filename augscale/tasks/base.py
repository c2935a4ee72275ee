"""What every task knows: raw reading, training format, answer extraction, scoring, verification.

The rest of the pipeline is task-agnostic and asks a :class:`Task`. A record is a plain
dict with the canonical columns of DESIGN.md (:data:`RECORD_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from augscale.errors import AugscaleError

RECORD_COLUMNS: tuple[str, ...] = (
    "id", "task", "split", "prompt", "context", "target", "answer",
    "source", "parent_id", "difficulty", "meta",
)

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class RawDataError(AugscaleError, ValueError):
    """A raw data file that cannot be read: names the file and the line or column."""


@dataclass(frozen=True)
class SpecialTokens:
    """The structure markers of the case study: ``<START_Q>{input}<END_Q><START_A>{target}<END_A>``."""

    start_q: str = "<START_Q>"
    end_q: str = "<END_Q>"
    start_a: str = "<START_A>"
    end_a: str = "<END_A>"

    def all(self) -> list[str]:
        return [self.start_q, self.end_q, self.start_a, self.end_a]


@dataclass
class Verdict:
    """The outcome of verifying one generated sample: kept, or rejected with a reason.

    ``evidence`` goes into the row's ``meta`` so a reader can see why it was kept.
    """

    ok: bool
    reason: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def reject(cls, reason: str, **evidence: Any) -> "Verdict":
        return cls(False, reason, evidence)


def make_record(
    *, id: str, task: str, split: str, prompt: str, target: str, answer: str,
    context: str | None = None, source: str = "original", parent_id: str | None = None,
    difficulty: float = 0.0, meta: dict[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Build one canonical record (the Parquet row of DESIGN.md)."""
    if isinstance(meta, dict):
        meta = json.dumps(meta, sort_keys=True)
    return {
        "id": id, "task": task, "split": split, "prompt": prompt, "context": context,
        "target": target, "answer": answer, "source": source, "parent_id": parent_id,
        "difficulty": float(difficulty), "meta": meta or "{}",
    }


def wilson_interval(successes: int, n: int, level: float = 0.95) -> list[float]:
    """Wilson score interval for a proportion (scipy's ``binomtest``); ``[0, 0]`` for ``n == 0``."""
    if n == 0:
        return [0.0, 0.0]
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return [max(0.0, float(ci.low)), min(1.0, float(ci.high))]


def normalize_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class Task:
    """Base class of a task. Subclasses set the class attributes and override the hooks.

    Class attributes:
        name: the short name users type (registry key).
        hub_id, hub_config: where ``datasets.load_dataset`` finds the raw data.
        tokens: the special tokens that training and evaluation read.
        strategies: augmentation strategies this task supports.
    """

    name: ClassVar[str] = ""
    hub_id: ClassVar[str | None] = None
    hub_config: ClassVar[str | None] = None
    tokens: SpecialTokens = SpecialTokens()
    strategies: ClassVar[tuple[str, ...]] = ()
    # Bumped when the canonical records a task produces change in a way source hashing misses.
    format_version: ClassVar[int] = 1

    # ----- raw data -----------------------------------------------------------------
    def raw_files(self, data_dir: Path) -> dict[str, list[Path]]:
        """Raw split name -> files under ``data_dir`` (raises RawDataError when missing)."""
        raise NotImplementedError

    def read_raw_file(self, path: Path) -> list[dict[str, Any]]:
        """Rows of one raw file, as dicts in the raw (Hub) field names."""
        raise NotImplementedError

    def load_hub(self) -> dict[str, list[dict[str, Any]]]:
        """Raw split name -> rows, from the Hugging Face Hub (needs network or HF cache)."""
        import datasets

        ds = datasets.load_dataset(self.hub_id, self.hub_config)
        return {split: [self.hub_row(r) for r in ds[split]] for split in ds}

    def hub_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Map a Hub row to the raw-file field names (identity unless the Hub differs)."""
        return row

    def to_record(self, raw: dict[str, Any], *, raw_split: str, index: int) -> dict[str, Any]:
        """One raw row -> one canonical record (split assigned later by :meth:`assign_splits`)."""
        raise NotImplementedError

    def assign_splits(self, raw_splits: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """Canonical records per split (train/valid/test) from the raw splits' records."""
        raise NotImplementedError

    # ----- formatting ---------------------------------------------------------------
    def input_text(self, record: dict[str, Any]) -> str:
        """What goes between START_Q and END_Q."""
        return record["prompt"]

    def prompt_text(self, record: dict[str, Any]) -> str:
        """The model's input at inference: everything up to and including START_A."""
        t = self.tokens
        return f"{t.start_q}{self.input_text(record)}{t.end_q}{t.start_a}"

    def train_text(self, record: dict[str, Any]) -> str:
        """The full training text: ``<START_Q>{input}<END_Q><START_A>{target}<END_A>``."""
        return f"{self.prompt_text(record)}{record['target']}{self.tokens.end_a}"

    def cut_target(self, text: str) -> str:
        """The generated target in ``text``: after the last START_A, before the first END_A after it."""
        t = self.tokens
        if t.start_a in text:
            text = text.rsplit(t.start_a, 1)[1]
        return text.split(t.end_a, 1)[0].strip()

    def extract_answer(self, text: str) -> str | None:
        """The answer scoring compares, cut out of a model's output (None if none can be cut)."""
        target = self.cut_target(text)
        return target or None

    def answer_from_target(self, target: str) -> str:
        """The record's ``answer`` given its ``target``."""
        return target.strip()

    # ----- scoring ------------------------------------------------------------------
    def score(self, prediction: str, reference: str, context: str | None = None) -> dict[str, Any]:
        """Per-row scores; always holds ``correct`` (bool)."""
        raise NotImplementedError

    def summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Summary over per-row scores: at least ``accuracy``, ``n`` and ``ci95``."""
        n = len(rows)
        k = sum(bool(r["correct"]) for r in rows)
        return {"accuracy": k / n if n else 0.0, "n": n, "ci95": wilson_interval(k, n)}

    # ----- verification and curriculum ----------------------------------------------
    def verify(self, record: dict[str, Any]) -> Verdict:
        """Check a generated record; the default accepts any non-empty target."""
        if not record.get("target", "").strip():
            return Verdict.reject("empty_target")
        return Verdict(True)

    def difficulty(self, record: dict[str, Any]) -> float:
        """How hard a record is, for curriculum ordering (higher is harder)."""
        raise NotImplementedError

    # ----- cache key ----------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Settings that change the records (e.g. jsonl column names); part of the cache key."""
        return {}

    def code_fingerprint(self) -> str:
        """Hash of the code that determines this task's records, for honest cache keys."""
        h = hashlib.sha256()
        for cls in type(self).__mro__:
            if cls is object:
                continue
            try:
                h.update(inspect.getsource(inspect.getmodule(cls)).encode())
            except (OSError, TypeError):
                h.update(cls.__qualname__.encode())
        h.update(str(self.format_version).encode())
        return h.hexdigest()[:16]


def read_jsonl(path: Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line or a missing field raises RawDataError naming both.

    Raises:
        RawDataError: empty file, line that is not a JSON object, or a missing required field.
    """
    rows: list[dict[str, Any]] = []
    required = list(required)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RawDataError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
            if not isinstance(obj, dict):
                raise RawDataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in required if k not in obj]
            if missing:
                raise RawDataError(f"{path}:{lineno}: missing field(s) {missing}; the line has {sorted(obj)}")
            rows.append(obj)
    if not rows:
        raise RawDataError(f"{path}: empty file (no rows)")
    return rows


def read_csv(path: Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a CSV file with a header; a missing expected column raises RawDataError naming it.

    Raises:
        RawDataError: empty file, or a required column absent from the header.
    """
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        if not header:
            raise RawDataError(f"{path}: empty file (no header)")
        missing = [c for c in required if c not in header]
        if missing:
            raise RawDataError(f"{path}: missing column(s) {missing}; the header has {header}")
        rows = []
        for row in reader:
            if None in row:  # more fields than the header names
                raise RawDataError(f"{path}:{reader.line_num}: more fields than the header's {len(header)}")
            rows.append(dict(row))
    if not rows:
        raise RawDataError(f"{path}: empty file (a header and no rows)")
    return rows


def stable_bucket(key: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) from a string, for reproducible splits."""
    digest = hashlib.sha256((salt + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
