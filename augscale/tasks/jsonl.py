"""A user's own data set: JSONL, CSV or Parquet files with configurable columns, exact-match scored.

Files: ``train.*`` and optionally ``valid.*`` and ``test.*`` (``.jsonl``, ``.csv`` or
``.parquet``) in the data directory. Missing valid/test splits are cut deterministically
from train (5% each). Difficulty: the target's length in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augscale.tasks.base import RawDataError, Task, make_record, normalize_ws, read_csv, read_jsonl, stable_bucket

EXTENSIONS = (".jsonl", ".csv", ".parquet")


class JsonlTask(Task):
    """Generic task over a user's files.

    Args:
        input_col: column holding the model's input.
        target_col: column holding what the model learns to produce.
        context_col: optional extra input column, placed before the input.
        name: the data set's name (used in record ids and snapshot folders).
    """

    name = "jsonl"

    def __init__(self, input_col: str = "input", target_col: str = "target",
                 context_col: str | None = None, name: str = "jsonl"):
        self.input_col, self.target_col, self.context_col = input_col, target_col, context_col
        self.dataset_name = name

    def params(self):
        return {"input_col": self.input_col, "target_col": self.target_col,
                "context_col": self.context_col, "name": self.dataset_name}

    def _columns(self) -> list[str]:
        return [c for c in (self.input_col, self.target_col, self.context_col) if c]

    def raw_files(self, data_dir: Path) -> dict[str, list[Path]]:
        files: dict[str, list[Path]] = {}
        for split in ("train", "valid", "test"):
            found = [data_dir / f"{split}{ext}" for ext in EXTENSIONS if (data_dir / f"{split}{ext}").is_file()]
            if found:
                files[split] = found
        if "train" not in files:
            raise RawDataError(f"{data_dir}: no train file (expected train.jsonl, train.csv or train.parquet)")
        return files

    def read_raw_file(self, path: Path) -> list[dict[str, Any]]:
        cols = self._columns()
        if path.suffix == ".jsonl":
            return read_jsonl(path, required=cols)
        if path.suffix == ".csv":
            return read_csv(path, required=cols)
        import polars as pl

        df = pl.read_parquet(path)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise RawDataError(f"{path}: missing column(s) {missing}; the file has {df.columns}")
        if df.height == 0:
            raise RawDataError(f"{path}: empty file (no rows)")
        return df.select(cols).to_dicts()

    def load_hub(self):
        raise RawDataError("the jsonl task reads local files only: pass --data-dir or set AUGSCALE_DATA_DIR")

    def to_record(self, raw, *, raw_split, index):
        target = str(raw[self.target_col]).strip()
        ctx = raw.get(self.context_col) if self.context_col else None
        rec = make_record(id=f"{self.dataset_name}-{raw_split}-{index:05d}", task=self.name, split=raw_split,
                          prompt=str(raw[self.input_col]).strip(), context=None if ctx is None else str(ctx),
                          target=target, answer=target)
        rec["difficulty"] = self.difficulty(rec)
        return rec

    def assign_splits(self, raw_splits):
        out = {s: list(raw_splits.get(s, [])) for s in ("train", "valid", "test")}
        missing = [s for s in ("valid", "test") if not out[s]]
        if missing:
            keep = []
            for rec in out["train"]:
                b = stable_bucket(rec["id"], "jsonl-split")
                if "valid" in missing and b < 0.05:
                    out["valid"].append(rec)
                elif "test" in missing and 0.05 <= b < 0.10:
                    out["test"].append(rec)
                else:
                    keep.append(rec)
            out["train"] = keep
        for split, recs in out.items():
            for r in recs:
                r["split"] = split
        return out

    def input_text(self, record):
        if record.get("context"):
            return f"{record['context']}\n{record['prompt']}"
        return record["prompt"]

    def score(self, prediction, reference, context=None):
        """Exact match after whitespace normalisation."""
        pred = normalize_ws(self.cut_target(prediction))
        return {"extracted": pred or None, "correct": pred == normalize_ws(reference)}

    def difficulty(self, record):
        """The target's length in words."""
        return float(len(record["target"].split()))
