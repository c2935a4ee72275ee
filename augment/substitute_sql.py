"""SQL ``substitute``: a WHERE/HAVING literal and its mention in the question change together.

A literal of the query's WHERE or HAVING clause (``age > 56``, ``born_state = 'Alabama'``) that
the question writes verbatim, once, gets a new value in both: a number of the same kind and
similar size, or a string that the seed queries compare the same column with (``'California'``
from another question about ``born_state``). The text is edited in place, so the query keeps its
original spelling. A variant is kept only if the new query parses and returns a non-empty
result on a database synthesized from the schema (:mod:`augscale.tasks.sqlexec`).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Iterable

from pydantic import Field
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from augscale.augment.strategies import Candidate, Strategy, StrategyParams, register_strategy
from augscale.tasks import sqlexec

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In)


def _column_of(lit: exp.Literal) -> str | None:
    """The (unqualified, lower-case) column a literal is compared with, if any."""
    node = lit.parent
    while isinstance(node, (exp.Neg, exp.Paren, exp.Tuple)):
        node = node.parent
    if isinstance(node, _COMPARISONS) and isinstance(node.this, exp.Column):
        return node.this.name.lower()
    return None


def _number_pattern(text: str) -> re.Pattern:
    return re.compile(r"(?<![\w.'\"])" + re.escape(text) + r"(?![\w'\"]|\.\d)")


def _string_pattern(text: str, flags: int = 0) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w)", flags)


def literal_slots(question: str, sql: str) -> list[dict[str, Any]]:
    """The literals that may change: under WHERE/HAVING, not LIKE patterns, written once in the
    question and once in the query. Each: ``{"kind": "number"|"string", "text", "column"}``."""
    slots, seen = [], set()
    for lit in sqlexec.where_literals(sql):
        if isinstance(lit.parent, (exp.Like, exp.ILike)) or lit.this in seen:
            continue
        seen.add(lit.this)
        text = lit.this
        if lit.is_string:
            if not text.strip() or "%" in text:
                continue
            in_sql = len(re.findall(r"(['\"])" + re.escape(text) + r"\1", sql))
            in_q = len(_string_pattern(text, re.IGNORECASE).findall(question))
            kind = "string"
        else:
            in_sql = len(_number_pattern(text).findall(sql))
            in_q = len(_number_pattern(text).findall(question))
            kind = "number"
        if in_sql == 1 and in_q == 1:
            slots.append({"kind": kind, "text": text, "column": _column_of(lit)})
    return slots


def string_values(queries: Iterable[str]) -> dict[str, list[str]]:
    """Column name -> the string literals the queries compare it with (sorted, distinct)."""
    found: dict[str, set[str]] = {}
    for sql in queries:
        for lit in sqlexec.where_literals(sql):
            column = _column_of(lit)
            if lit.is_string and column and lit.this.strip() and "%" not in lit.this:
                found.setdefault(column, set()).add(lit.this)
    return {c: sorted(v) for c, v in sorted(found.items())}


def propose_number(text: str, rng) -> str:
    """A new number written like ``text``: same decimals, similar size, never the same value."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    value = int(Fraction(text) * 10**decimals)
    if decimals == 0 and 1900 <= value <= 2100:
        new = value + rng.choice([d for d in range(-15, 16) if d])
    else:
        # Keep the roundness (300 -> 450, not 457): draw multiples of the largest step dividing it.
        step = next((s for s in (10**6, 10**5, 10**4, 1000, 100, 10, 5) if value % s == 0 and value > s), 1)
        k = value // step
        new = value
        while new == value:
            new = step * rng.randint(max(1, k // 2), max(2 * k, k + 5))
    if decimals:
        s = str(new).rjust(decimals + 1, "0")
        return s[:-decimals] + "." + s[-decimals:]
    return str(new)


def substitute(question: str, sql: str, old: str, new: str, kind: str) -> tuple[str, str]:
    """``(question, sql)`` with the one mention of ``old`` in each replaced by ``new``."""
    if kind == "number":
        sql = _number_pattern(old).sub(new, sql, count=1)
        question = _number_pattern(old).sub(new, question, count=1)
        return question, sql
    sql = re.sub(r"(['\"])" + re.escape(old) + r"\1", lambda m: m.group(1) + new + m.group(1), sql, count=1)
    pattern = _string_pattern(old)
    if not pattern.search(question):
        pattern = _string_pattern(old, re.IGNORECASE)
    question = pattern.sub(lambda m: new, question, count=1)
    return question, sql


def non_empty_on_synthesized(context: str, sql: str, seed: int, n: int = 2) -> tuple[bool, str | None, list]:
    """Does ``sql`` return rows on one of ``n`` databases synthesized from the schema?

    Returns:
        (ok, reason, rows per database): reason ``unparseable_sql``, ``execution_error`` or
        ``empty_result`` when not ok.
    """
    try:
        sqlglot.parse_one(sql, read=sqlexec.DIALECT)
    except SqlglotError:
        return False, "unparseable_sql", []
    databases = sqlexec.synthesize_databases(context, sql, n=n, seed=seed)
    counts, errors = [], []
    try:
        for conn in databases:
            rows, error = sqlexec.run_sandboxed(conn, sql)
            if error:
                errors.append(error)
                counts.append(None)
            else:
                counts.append(len(rows))
    finally:
        for conn in databases:
            conn.close()
    if any(c for c in counts):
        return True, None, counts
    return False, "execution_error" if errors else "empty_result", counts


class SQLSubstituteParams(StrategyParams):
    """Params of sql ``substitute``."""

    variants_per_seed: int = Field(2, ge=1, le=50, description="variants attempted per seed question")
    max_tries: int = Field(6, ge=1, le=100, description="draws of new values per variant before giving up")
    databases: int = Field(2, ge=1, le=10, description="synthesized databases the new query is run on")


@register_strategy
class SQLSubstitute(Strategy):
    """New WHERE/HAVING literals in query and question together (module docstring).

    One output row: ``{"id": "sql-train-00000~substitute-0", "prompt": "How many heads of the
    departments are older than 43 ?", "context": "CREATE TABLE head (age INTEGER)", "target":
    "SELECT COUNT(*) FROM head WHERE age > 43", "source": "substitute", ...}``
    """

    name = "substitute"
    task = "sql"
    Params = SQLSubstituteParams
    input_columns = ("id", "prompt", "context", "target")

    @classmethod
    def build_resources(cls, task, seeds, **kwargs: Any) -> dict[str, Any]:
        """``{"strings": {column: [value, ...]}}`` from the seed queries."""
        return {"strings": string_values(seeds.select("target").collect()["target"].to_list())}

    def generate(self, seeds: list[dict[str, Any]]) -> Iterable[Candidate]:
        for seed in seeds:
            yield from self._variants(seed)

    def _variants(self, seed: dict[str, Any]) -> Iterable[Candidate]:
        variants = int(self.params.get("variants_per_seed", 2))
        tries = int(self.params.get("max_tries", 6))
        n_db = int(self.params.get("databases", 2))
        strings: dict[str, list[str]] = self.resources.get("strings", {})
        pid, question, sql, context = seed["id"], seed["prompt"], seed["target"], seed.get("context") or ""
        slots = literal_slots(question, sql)
        if not slots:
            for i in range(variants):
                yield Candidate.reject(pid, i, "no_substitutable_literal")
            return
        rng = self.rng(pid)
        seen = {sql}
        for i in range(variants):
            reason = "no_alternative_value"
            for _ in range(tries):
                new_q, new_sql, changed = question, sql, {}
                for slot in slots:
                    new = self._new_value(slot, question, strings, rng)
                    if new is None:
                        continue
                    new_q, new_sql = substitute(new_q, new_sql, slot["text"], new, slot["kind"])
                    changed[slot["text"]] = new
                if not changed:
                    reason = "no_alternative_value"
                    continue
                if new_sql in seen:
                    reason = "no_new_variant"
                    continue
                ok, why, counts = non_empty_on_synthesized(context, new_sql, self.seed, n_db)
                if not ok:
                    reason = why
                    continue
                seen.add(new_sql)
                yield Candidate(pid, i, prompt=new_q, target=new_sql, answer=new_sql, context=seed.get("context"),
                                evidence={"substituted": changed, "result_rows": counts})
                break
            else:
                yield Candidate.reject(pid, i, reason)

    @staticmethod
    def _new_value(slot: dict[str, Any], question: str, strings: dict[str, list[str]], rng) -> str | None:
        if slot["kind"] == "number":
            for _ in range(5):
                new = propose_number(slot["text"], rng)
                if not _number_pattern(new).search(question):
                    return new
            return None
        options = [v for v in strings.get(slot["column"] or "", ())
                   if v.lower() != slot["text"].lower() and not _string_pattern(v, re.IGNORECASE).search(question)
                   and "'" not in v and '"' not in v]
        return rng.choice(options) if options else None
