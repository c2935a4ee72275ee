"""SQL generation on sql-create-context: question + CREATE TABLE context -> SQL query.

Record: ``prompt`` the question; ``context`` the CREATE TABLE statements; ``target`` and
``answer`` the query. The model's input holds the context and then the question.
Difficulty: structural complexity of the query's sqlglot parse (see
:func:`augscale.tasks.sqlexec.sql_difficulty`). Splits: the data set has one split upstream;
records are grouped by schema (the set of table names in the context) and the groups go
deterministically about 90/5/5 to train/valid/test, so that test measures unseen schemas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from augscale.tasks import sqlexec
from augscale.tasks.base import RawDataError, Task, Verdict, make_record, read_jsonl, stable_bucket

_TABLE_RE = re.compile(r"CREATE\s+TABLE\s+[`\"]?(\w+)", re.IGNORECASE)


def schema_key(context: str) -> str:
    """The schema a record belongs to: its sorted table names (``department|head``)."""
    return "|".join(sorted({t.lower() for t in _TABLE_RE.findall(context)}))


class SQLTask(Task):
    name = "sql"
    hub_id = "b-mc2/sql-create-context"
    strategies = ("substitute", "rephrase", "evolve", "self_sample")
    split_shares = (0.90, 0.05, 0.05)

    def raw_files(self, data_dir: Path) -> dict[str, list[Path]]:
        base = data_dir / "sql-create-context" if (data_dir / "sql-create-context").is_dir() else data_dir
        p = base / "train.jsonl"
        if not p.is_file():
            raise RawDataError(f"{p}: sql-create-context file not found (expected train.jsonl)")
        return {"train": [p]}

    def read_raw_file(self, path: Path) -> list[dict[str, Any]]:
        return read_jsonl(path, required=("question", "context", "answer"))

    def to_record(self, raw, *, raw_split, index):
        query = raw["answer"].strip()
        rec = make_record(id=f"sql-{raw_split}-{index:05d}", task=self.name, split=raw_split,
                          prompt=raw["question"].strip(), context=raw["context"].strip(),
                          target=query, answer=query)
        rec["difficulty"] = self.difficulty(rec)
        return rec

    def assign_splits(self, raw_splits):
        out: dict[str, list] = {"train": [], "valid": [], "test": []}
        train_share, valid_share, _ = self.split_shares
        for rec in raw_splits["train"]:
            b = stable_bucket(schema_key(rec["context"] or ""), "sql-split")
            split = "train" if b < train_share else "valid" if b < train_share + valid_share else "test"
            rec["split"] = split
            out[split].append(rec)
        return out

    def input_text(self, record):
        return f"{record['context']}\n{record['prompt']}"

    def extract_answer(self, text):
        sql = sqlexec.extract_sql(self.cut_target(text), self.tokens.end_a)
        return sql or None

    def score(self, prediction, reference, context=None):
        """Execution-based: equal results on several databases synthesized from the context."""
        pred_sql = sqlexec.extract_sql(self.cut_target(prediction), self.tokens.end_a)
        exact = sqlexec.normalize_sql(pred_sql) == sqlexec.normalize_sql(reference)
        res = sqlexec.execution_match(pred_sql, reference, context or "")
        return {"exact": exact, "execution_correct": res["execution_correct"],
                "correct": res["execution_correct"], "error": res["error"],
                "degenerate_reference": res["degenerate_reference"]}

    def summarize(self, rows):
        out = super().summarize(rows)
        n = len(rows) or 1
        out["exact_match"] = sum(bool(r["exact"]) for r in rows) / n
        out["execution_accuracy"] = out["accuracy"]
        out["degenerate_references"] = sum(bool(r.get("degenerate_reference")) for r in rows)
        return out

    def verify(self, record):
        import sqlglot
        from sqlglot.errors import ParseError

        try:
            sqlglot.parse_one(record["target"], read="sqlite")
        except ParseError as e:
            return Verdict.reject("unparseable_sql", error=str(e)[:200])
        return Verdict(True)

    def difficulty(self, record):
        return sqlexec.sql_difficulty(record["target"])
