"""SQL strategies that ask an LLM: ``rephrase`` (question reworded, query unchanged) and ``evolve``
(a new question and query on a training schema, checked by running it).

``rephrase`` keeps a reworded question only if it still writes every value the query compares
with that the seed question wrote (``'Paris'``, ``56``): without them the query no longer
follows from the question. ``evolve`` keeps a new query only if it parses, names only tables
and columns of the schema (synthesized databases would otherwise invent them), and returns a
non-empty result that is not the whole of its table on databases synthesized from the schema
(:mod:`augscale.tasks.sqlexec`): a query that returns nothing or everything says nothing.

Rejection reasons: ``refusal``, ``empty_question``, ``unchanged``, ``missing_literal``,
``unparseable_output``, ``unparseable_sql``, ``not_a_query``, ``unknown_table``,
``unknown_column``, ``same_as_seed``, ``execution_error``, ``empty_result``, ``whole_table``,
and the request failures of :mod:`.base`.
"""

from __future__ import annotations

import re
from typing import Any

import sqlglot
from pydantic import Field, field_validator
from sqlglot import exp
from sqlglot.errors import SqlglotError

from augscale.augment.llm.base import LLMParams, LLMStrategy, request_reason
from augscale.augment.llm.prompts import is_refusal, labelled_sections, reworded, strip_fences
from augscale.augment.strategies import Candidate, register_strategy
from augscale.tasks import sqlexec

_QUESTION_LABELS = ("New question", "Rephrased question", "Question")


def _mentions(question: str, text: str, number: bool) -> bool:
    if number:
        return bool(re.search(r"(?<![\w.])" + re.escape(text) + r"(?![\w]|\.\d)", question))
    return bool(re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", question, re.IGNORECASE))


def question_literals(question: str, sql: str) -> list[str]:
    """The WHERE/HAVING literals of ``sql`` that ``question`` writes (LIKE patterns left out)."""
    out = []
    for lit in sqlexec.where_literals(sql):
        text = lit.this.strip("%") if isinstance(lit.parent, (exp.Like, exp.ILike)) else lit.this
        if text.strip() and text not in out and _mentions(question, text, not lit.is_string):
            out.append(text)
    return out


def question_reason(text: str, original: str) -> tuple[str, str | None]:
    """The question in a model's answer, and a rejection reason for its form (or None)."""
    return reworded(text, original, _QUESTION_LABELS, "empty_question")


class SQLRephraseParams(LLMParams):
    samples: int | None = Field(None, ge=1, le=64, description="rephrasings per seed (one request, n samples)")


@register_strategy
class SQLRephrase(LLMStrategy):
    """The seed question reworded; the query and the schema unchanged.

    One output row: ``{"id": "sql-train-00000~rephrase-0", "prompt": "Count the department heads
    who are over 56.", "context": "CREATE TABLE head (age INTEGER)", "target": "SELECT COUNT(*)
    FROM head WHERE age > 56", "source": "rephrase", "meta": {"rephrase": {"literals": ["56"], ...}}}``
    """

    name = "rephrase"
    task = "sql"
    Params = SQLRephraseParams
    input_columns = ("id", "prompt", "context", "target")
    code_modules = ("augscale.tasks.sqlexec",)
    templates = {"rephrase": ("sql_rephrase", frozenset({"question", "context", "query"}))}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, question, sql, context = seed["id"], seed["prompt"], seed["target"], seed.get("context") or ""
        literals = question_literals(question, sql)
        result = self.ask("rephrase", question=question, context=context, query=sql)
        out = []
        for i in range(self.samples):
            if not result.ok or i >= len(result.texts):
                reason = request_reason(result) if not result.ok else "request_missing_sample"
                out.append(Candidate.reject(pid, i, reason, error=result.error))
                continue
            new_q, reason = question_reason(result.texts[i], question)
            missing = [lit for lit in literals if not _mentions(new_q, lit, False)] if reason is None else []
            ev = self.evidence([result], ("rephrase",), literals=literals, **({"missing": missing} if missing else {}))
            out.append(Candidate(pid, i, prompt=new_q, target=sql, answer=sql, context=seed.get("context"),
                                 reason=reason or ("missing_literal" if missing else None), evidence=ev))
        return out


def clean_sql(text: str) -> str:
    """One query as a model writes it: fences, a trailing ``;`` and line breaks removed."""
    return " ".join(strip_fences(text).strip().rstrip(";").split())


def schema_reason(sql: str, context: str) -> tuple[str | None, dict[str, Any]]:
    """None if ``sql`` parses as a query naming only tables and columns of ``context``, else why.

    Aliases the query defines (``AS total``, ``T1``) and CTE names count as known; a
    double-quoted name that is not a column is a string (Spider writes strings so).
    """
    try:
        tree = sqlglot.parse_one(sql, read=sqlexec.DIALECT)
    except SqlglotError as e:
        return "unparseable_sql", {"error": str(e)[:200]}
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.With)) and not (
            isinstance(tree, exp.Subquery)):
        return "not_a_query", {"kind": type(tree).__name__}
    schemas = sqlexec.table_schemas(context)
    tables = {t.lower() for t in schemas}
    columns = {c.lower() for cols in schemas.values() for c, _ in cols}
    defined = {a.alias.lower() for a in tree.find_all(exp.Alias) if a.alias}
    defined |= {c.alias.lower() for c in tree.find_all(exp.CTE) if c.alias}
    defined |= {t.alias.lower() for t in tree.find_all(exp.Table) if t.alias}
    for t in tree.find_all(exp.Table):
        if t.name.lower() not in tables and t.name.lower() not in defined:
            return "unknown_table", {"table": t.name}
    for c in tree.find_all(exp.Column):
        name = c.name.lower()
        if isinstance(c.this, exp.Star) or name in columns or name in defined:
            continue
        if isinstance(c.this, exp.Identifier) and c.this.quoted:
            continue  # "Dayana Robel": a string in Spider's style
        return "unknown_column", {"column": c.name}
    return None, {}


def _single_table(sql: str) -> str | None:
    """The table of a plain single-table SELECT (no join, no aggregate, no GROUP BY), else None."""
    try:
        tree = sqlglot.parse_one(sql, read=sqlexec.DIALECT)
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or tree.args.get("group"):
        return None
    if any(isinstance(p.unalias(), exp.AggFunc) for p in tree.expressions):
        return None
    from_ = tree.args.get("from") or tree.args.get("from_")
    table = from_.this if from_ is not None else None
    return table.name if isinstance(table, exp.Table) else None


def execution_reason(sql: str, context: str, seed: int, databases: int = 2) -> tuple[str | None, dict[str, Any]]:
    """Run ``sql`` on databases synthesized from the schema: None if it returns rows, and not every
    row of its one table, on at least one of them; else ``execution_error``, ``empty_result`` or
    ``whole_table``."""
    table = _single_table(sql)
    conns = sqlexec.synthesize_databases(context, sql, n=databases, seed=seed)
    counts, sizes, errors = [], [], []
    try:
        for conn in conns:
            rows, error = sqlexec.run_sandboxed(conn, sql)
            if error:
                errors.append(error)
                continue
            counts.append(len(rows))
            if table is not None:
                sizes.append(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        for conn in conns:
            conn.close()
    ev = {"result_rows": counts}
    if errors:
        return "execution_error", {**ev, "error": errors[0]}
    if not any(counts):
        return "empty_result", ev
    if table is not None and all(c == s for c, s in zip(counts, sizes)):
        return "whole_table", {**ev, "table_rows": sizes}
    return None, ev


SQL_EVOLUTIONS: dict[str, str] = {
    "other_columns": "Ask about other columns or another condition than the example does.",
    "add_clause": "Add what the example lacks: a condition, a sort, an aggregate or a grouping.",
    "harder": "Make it harder: combine tables with a join, or use a nested query, if the tables allow it.",
}


class SQLEvolveParams(LLMParams):
    variants: int = Field(1, ge=1, le=16, description="new questions per seed")
    operations: list[str] = Field(list(SQL_EVOLUTIONS), min_length=1, description=f"evolutions drawn from: "
                                  f"{', '.join(SQL_EVOLUTIONS)}")
    databases: int = Field(2, ge=1, le=10, description="synthesized databases the new query is run on")

    @field_validator("operations")
    @classmethod
    def _known(cls, ops: list[str]) -> list[str]:
        unknown = [o for o in ops if o not in SQL_EVOLUTIONS]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; choose from {', '.join(SQL_EVOLUTIONS)}")
        return ops


@register_strategy
class SQLEvolve(LLMStrategy):
    """A new question and query on a seed's schema, kept if the query runs to a meaningful result.

    One output row: ``{"id": "sql-train-00000~evolve-0", "prompt": "What is the average age of
    the heads born in Alabama?", "context": "CREATE TABLE head (age INTEGER, born_state
    VARCHAR)", "target": "SELECT AVG(age) FROM head WHERE born_state = 'Alabama'", "source":
    "evolve", "meta": {"evolve": {"operation": "add_clause", "result_rows": [1, 1], ...}}}``
    """

    name = "evolve"
    task = "sql"
    Params = SQLEvolveParams
    input_columns = ("id", "prompt", "context", "target")
    code_modules = ("augscale.tasks.sqlexec",)
    templates = {"evolve": ("sql_evolve", frozenset({"question", "context", "query", "instruction"}))}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, question, sql, context = seed["id"], seed["prompt"], seed["target"], seed.get("context") or ""
        variants = int(self.params.get("variants", 1))
        ops = list(self.params.get("operations") or SQL_EVOLUTIONS)
        n_db = int(self.params.get("databases", 2))
        rng = self.rng(pid)
        out = []
        for j in range(variants):
            op = rng.choice(ops)
            result = self.ask("evolve", n=1, question=question, context=context, query=sql,
                              instruction=SQL_EVOLUTIONS[op])
            if not result.ok or not result.texts:
                reason = request_reason(result) if not result.ok else "request_missing_sample"
                out.append(Candidate.reject(pid, j, reason, operation=op, error=result.error))
                continue
            text = result.texts[0]
            parts = labelled_sections(text, ("Question", "SQL"))
            new_q, new_sql = parts.get("question", "").strip(), clean_sql(parts.get("sql", ""))
            reason, ev = None, {}
            if is_refusal(text):
                reason = "refusal"
            elif not new_q or not new_sql:
                reason = "unparseable_output"
            elif sqlexec.normalize_sql(new_sql) == sqlexec.normalize_sql(sql):
                reason = "same_as_seed"
            else:
                reason, ev = schema_reason(new_sql, context)
                if reason is None:
                    reason, ev = execution_reason(new_sql, context, self.seed, n_db)
            evidence = self.evidence([result], ("evolve",), operation=op, **ev)
            out.append(Candidate(pid, j, prompt=new_q, target=new_sql, answer=new_sql, context=seed.get("context"),
                                 reason=reason, evidence=evidence))
        return out
