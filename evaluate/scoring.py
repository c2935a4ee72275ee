"""Scoring predictions with a task's own scorer: files of predictions in, per-row scores and a summary out.

The scoring rules live in the task modules (``Task.score`` and ``Task.summarize``); this
module reads and checks prediction files and applies them. Input line::

    {"id": "gsm8k-test-00000", "prediction": "... #### 18<END_A>", "reference": "18"}

(``context``, the CREATE TABLE statements, is required for sql). Output row, in input order::

    {"id": "gsm8k-test-00000", "extracted": "18", "correct": true, "correct_flexible": true}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from augscale.errors import AugscaleError
from augscale.tasks import Task


class PredictionFileError(AugscaleError, ValueError):
    """A predictions file that cannot be scored: names the file and the line."""


REQUIRED = ("id", "prediction", "reference")


def read_predictions(path: Path | str, task: Task) -> list[dict[str, Any]]:
    """Read and check a predictions JSONL file.

    Raises:
        PredictionFileError: unreadable file, empty file, a line that is not a JSON object, a
            missing field, a field of the wrong type (names the file and the line).
    """
    path = Path(path)
    required = REQUIRED + (("context",) if task.name == "sql" else ())
    rows = []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise PredictionFileError(f"{path}: cannot read ({e.strerror})") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise PredictionFileError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise PredictionFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in required if k not in obj]
            if missing:
                raise PredictionFileError(f"{where}: missing field(s) {missing}; required: {list(required)}")
            for k in ("prediction", "reference") + (("context",) if task.name == "sql" else ()):
                if not isinstance(obj[k], str):
                    raise PredictionFileError(f"{where}: {k!r} must be a string, got {type(obj[k]).__name__}")
            if not isinstance(obj["id"], (str, int)):
                raise PredictionFileError(f"{where}: 'id' must be a string or an integer")
            obj["_line"] = lineno
            rows.append(obj)
    if not rows:
        raise PredictionFileError(f"{path}: empty file (no predictions)")
    return rows


def score_one(task: Task, prediction: str, reference: str, context: str | None = None) -> dict[str, Any]:
    """The task's per-row scores plus ``format_valid`` (an answer could be cut from the prediction)."""
    scores = task.score(prediction, reference, context)
    scores["format_valid"] = task.extract_answer(prediction) is not None
    return scores


def score_rows(task: Task, rows: Iterable[dict[str, Any]], source: str = "<rows>") -> list[dict[str, Any]]:
    """Score each row (``prediction``, ``reference``, optional ``context``); ``id`` first in each result.

    Raises:
        PredictionFileError: a reference the task cannot read (names the row's line or index).
    """
    out = []
    for i, r in enumerate(rows):
        try:
            scores = task.score(r["prediction"], r["reference"], r.get("context"))
        except ValueError as e:  # e.g. a reference that is not a number / an MR
            raise PredictionFileError(f"{source}:{r.get('_line', i + 1)}: {e}") from None
        out.append({"id": r["id"], **scores})
    return out


def score_file(task: Task, path: Path | str, out: Path | str | None = None) -> dict[str, Any]:
    """Score a predictions file; write per-row scores to ``out`` (JSONL, input order) if given.

    Returns:
        The task's summary (``accuracy``, ``n``, ``ci95`` and the task's own figures) with ``task``.

    Raises:
        PredictionFileError: see :func:`read_predictions` and :func:`score_rows`.
    """
    rows = score_rows(task, read_predictions(path, task), str(path))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return {"task": task.name, **task.summarize(rows)}
