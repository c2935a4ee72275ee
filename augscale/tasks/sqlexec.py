"""Execution-based scoring of text-to-SQL on sql-create-context (Spider-derived).

A prediction is right when it returns the same rows as the reference on a few small
synthesized SQLite databases built from the item's ``CREATE TABLE`` context: a cheap form
of Zhong et al. 2020 "test-suite accuracy". The databases are filled around the literals of
the reference query (``age > 56`` gives rows with age 55, 56, 57; ``'Paris'`` gives
``'Paris'``, ``'paris'``, ``'PARIS'``) so that near misses (``>`` for ``>=``, the wrong case,
a dropped WHERE, the wrong column, COUNT for SUM) return different rows.

Queries run in :func:`run_sandboxed`: one read-only SELECT/WITH statement, an authorizer that
denies writes, ATTACH, PRAGMA and extension loading, and a progress handler that interrupts
a statement past its time budget.

Parsing is sqlglot's (sqlite dialect). Spider writes strings in double quotes
(``WHERE name = "Dayana Robel"``), which sqlglot reads as quoted identifiers and SQLite runs
as strings when no such column exists; :func:`_string_columns` treats them as strings.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections import Counter

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "sqlite"
MAX_ROWS = 10_000  # a result this long is a runaway cross join, not an answer
MAX_SYNTH_ROWS = 400  # rows per table at most, even for HAVING COUNT(*) > 200
PROGRESS_EVERY = 1_000  # SQLite VM instructions between time-budget checks

# Authorizer action codes by name; the allowed ones are all a read-only SELECT needs.
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.lower()
    for name in (
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX "
        "DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ "
        "SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE "
        "DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE"
    ).split()
}
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension"}

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Glob)
_CLAUSES = ("where", "group", "having", "order", "limit")
_SQL_BLOCK_RE = re.compile(r"<SQL>(.*?)(?:</SQL>|$)", re.S | re.I)
# sqlite before sql: the alternation takes the first that matches, and ```sqlite would leave "ite".
_FENCE_RE = re.compile(r"```(?:sqlite|sql)?[ \t]*\n?(.*?)(?:```|$)", re.S | re.I)
_CREATE_SPLIT_RE = re.compile(r"[;,]\s*(?=CREATE\s+TABLE\b)", re.I)
_QUOTED_RE = re.compile(r"('(?:[^']|'')*')")


# ---------------------------------------------------------------------------- text


def extract_sql(text: str, end_token: str = "<END_A>") -> str:
    """The SQL in a model completion.

    The end token and everything after it go first; then the body of ``<SQL>...</SQL>`` or of
    a fenced ```sql block when present, else the whole text; stripped, trailing ``;`` removed.
    """
    if end_token and end_token in text:
        text = text[: text.index(end_token)]
    for pattern in (_SQL_BLOCK_RE, _FENCE_RE):
        m = pattern.search(text)
        if m:
            text = m.group(1)
            break
    return text.strip().rstrip(";").strip()


def _parse(sql: str) -> exp.Expression | None:
    """One statement parsed with sqlglot, or None when it does not parse to exactly one."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError:
        return None
    return statements[0] if len(statements) == 1 else None


def _string_columns(tree: exp.Expression, known_columns: set[str] | None = None) -> list[exp.Column]:
    """Double-quoted "identifiers" that stand for strings: the value side of a comparison.

    ``x = "Paris"`` (Spider's MySQL habit) reads as a quoted column; it is a string when it is
    an unqualified quoted name on the right of a comparison, in an IN list or a BETWEEN bound,
    and (when the schema is known) not a column of it.
    """
    found = []
    for col in tree.find_all(exp.Column):
        if not col.this.args.get("quoted") or col.table:
            continue
        if known_columns is not None and col.name.lower() in known_columns:
            continue
        parent, key = col.parent, col.arg_key
        if (
            (isinstance(parent, _COMPARISONS) and key == "expression")
            or (isinstance(parent, exp.In) and key == "expressions")
            or (isinstance(parent, exp.Between) and key in ("low", "high"))
        ):
            found.append(col)
    return found


def _strings_to_literals(tree: exp.Expression, known_columns: set[str] | None = None) -> exp.Expression:
    for col in _string_columns(tree, known_columns):
        col.replace(exp.Literal.string(col.name))
    return tree


def normalize_sql(sql: str) -> str:
    """A canonical string for exact match.

    sqlglot parse + generate (sqlite dialect), double-quoted strings as single-quoted, keywords
    and identifiers lowercased but string literals kept, whitespace collapsed. Text that does
    not parse gets whitespace collapsed and is lowercased outside single-quoted strings.
    """
    sql = sql.strip().rstrip(";").strip()
    tree = _parse(sql)
    if tree is None:
        parts = _QUOTED_RE.split(" ".join(sql.split()))
        return "".join(p if i % 2 else p.lower() for i, p in enumerate(parts))
    tree = _strings_to_literals(tree)
    # Swap strings for lowercase placeholders, lowercase the whole text, then put them back.
    strings = {}
    for i, lit in enumerate(list(tree.find_all(exp.Literal))):
        if lit.is_string:
            key = f"__s{i}__"
            strings[f"'{key}'"] = lit.sql(dialect=DIALECT)
            lit.replace(exp.Literal.string(key))
    text = " ".join(tree.sql(dialect=DIALECT).lower().split())
    for key, original in strings.items():
        text = text.replace(key, original)
    return text


# ---------------------------------------------------------------------------- structure


def sql_difficulty(sql: str) -> float:
    """Structural complexity of a query; 0.0 when it does not parse.

    Scheme: +1 per JOIN; +2 per nested subquery (a SELECT inside another SELECT); +1 per
    aggregate function (COUNT, SUM, AVG, MIN, MAX, ...); +1 per clause among WHERE, GROUP BY,
    HAVING, ORDER BY and LIMIT (counted in every SELECT, nested ones too); +1 per set
    operation (UNION, INTERSECT, EXCEPT); +0.5 per WHERE condition beyond the first (conditions
    are the operands of AND/OR). ``SELECT name FROM t`` scores 0.0;
    ``SELECT T1.a, COUNT(*) FROM t AS T1 JOIN u AS T2 ON T1.id = T2.id GROUP BY T1.a`` 3.0.
    """
    tree = _parse(sql.strip().rstrip(";"))
    if tree is None:
        return 0.0
    score = 0.0
    score += len(list(tree.find_all(exp.Join)))
    score += 2 * sum(1 for s in tree.find_all(exp.Select) if s.find_ancestor(exp.Select) is not None)
    score += len(list(tree.find_all(exp.AggFunc)))
    score += len(list(tree.find_all(exp.Union, exp.Intersect, exp.Except)))
    for select in tree.find_all(exp.Select):
        score += sum(1 for clause in _CLAUSES if select.args.get(clause))
        where = select.args.get("where")
        if where is not None:
            score += 0.5 * (len(_flatten_conditions(where.this)) - 1)
    return score


def _flatten_conditions(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Paren):
        return _flatten_conditions(node.this)
    if isinstance(node, exp.Connector):
        return _flatten_conditions(node.this) + _flatten_conditions(node.expression)
    return [node]


def table_schemas(context: str) -> dict[str, list[tuple[str, str]]]:
    """Table name -> [(column, declared type)] from the CREATE TABLE statements in ``context``.

    Statements may be separated by ``;`` or ``,``. Types are as sqlglot spells them
    (``INTEGER`` -> ``INT``), which keeps SQLite's type affinity; a column without a type gets
    ``""``. Statements that do not parse are skipped.

    Example: ``"CREATE TABLE head (age INTEGER, name VARCHAR)"`` ->
    ``{"head": [("age", "INT"), ("name", "VARCHAR")]}``.
    """
    schemas: dict[str, list[tuple[str, str]]] = {}
    for part in _CREATE_SPLIT_RE.split(context):
        tree = _parse(part.strip().rstrip(";"))
        if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Schema):
            continue
        # A table named twice gets the union of its columns; a repeated column is kept once.
        name = tree.this.this.name
        name = next((t for t in schemas if t.lower() == name.lower()), name)
        columns = schemas.setdefault(name, [])
        for col in tree.this.expressions:
            if not isinstance(col, (exp.ColumnDef, exp.Identifier)):
                continue
            if any(c.lower() == col.name.lower() for c, _ in columns):
                continue
            kind = col.args.get("kind") if isinstance(col, exp.ColumnDef) else None
            columns.append((col.name, kind.sql() if kind is not None else ""))
    return schemas


def literal_values(sql: str) -> list:
    """Python values of the literals in a query (numbers as int/float, strings as str).

    Double-quoted strings in value position count as strings; negated numbers are negative.
    """
    tree = _parse(sql.strip().rstrip(";"))
    if tree is None:
        return []
    tree = _strings_to_literals(tree)
    # ``-3`` parses as Neg(Literal(3)): take the value of the Neg, or the sign is lost.
    nodes = (lit.parent if isinstance(lit.parent, exp.Neg) and not lit.is_string else lit
             for lit in tree.find_all(exp.Literal))
    return [v for v in map(_value, nodes) if v is not None]


def where_literals(sql: str) -> list[exp.Literal]:
    """The literal nodes under WHERE and HAVING, in order, all from one parsed tree.

    Double-quoted strings are turned into string literals first. To substitute a value,
    ``node.replace(exp.Literal.number(57))`` and regenerate with
    ``node.root().sql(dialect="sqlite")``. Empty when the query does not parse.
    """
    tree = _parse(sql.strip().rstrip(";"))
    if tree is None:
        return []
    tree = _strings_to_literals(tree)
    return [
        lit
        for lit in tree.find_all(exp.Literal)
        if lit.find_ancestor(exp.Where, exp.Having) is not None and not isinstance(lit.parent, exp.Limit)
    ]


def _value(node: exp.Expression) -> int | float | str | None:
    """The Python value of a literal, a negated number literal; None for anything else."""
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        v = _value(node.this)
        return -v if v is not None else None
    if not isinstance(node, exp.Literal):
        return None
    if node.is_string:
        return node.this
    try:
        return int(node.this)
    except ValueError:
        try:
            return float(node.this)
        except ValueError:
            return None


# ---------------------------------------------------------------------------- sandbox


def run_sandboxed(
    conn: sqlite3.Connection, sql: str, time_budget_s: float = 1.0
) -> tuple[list[tuple] | None, str | None]:
    """Run one read-only query; ``(rows, None)`` or ``(None, reason)``, never raises for bad SQL.

    Reasons: ``"empty"``, ``"multiple_statements"``, ``"not_a_select"``, ``"denied: <action>"``
    (SQLite's first denied action, e.g. ``"denied: attach"``, ``"denied: load_extension"``;
    ``DROP TABLE`` reads ``"denied: delete"``, a delete from sqlite_master), ``"timeout"``,
    ``"too_many_rows"``, ``"error: <sqlite message>"``.
    """
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        return None, "empty"
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError:
        statements = None  # SQLite decides; the authorizer below still guards it
    if statements is not None:
        if len(statements) > 1:
            return None, "multiple_statements"
        if not statements or not isinstance(statements[0], exp.Query):
            return None, "not_a_select"
    return _execute_guarded(conn, sql, time_budget_s)


def _execute_guarded(conn: sqlite3.Connection, sql: str, time_budget_s: float) -> tuple[list | None, str | None]:
    """Execute under the authorizer and the time budget (the layer below the sqlglot checks)."""
    denied: list[str] = []

    def authorize(action, arg1, arg2, db_name, source):
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
            denied.append(arg2.lower())
            return sqlite3.SQLITE_DENY
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        denied.append(_ACTION_NAMES.get(action, f"action_{action}"))
        return sqlite3.SQLITE_DENY

    deadline = time.monotonic() + time_budget_s
    timed_out = []

    def progress():
        if time.monotonic() > deadline:
            timed_out.append(True)
            return 1  # non-zero interrupts the statement
        return 0

    if hasattr(conn, "enable_load_extension"):
        conn.enable_load_extension(False)
    conn.set_authorizer(authorize)
    conn.set_progress_handler(progress, PROGRESS_EVERY)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(MAX_ROWS + 1)
        cursor.close()
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as e:
        if denied:
            return None, f"denied: {denied[0]}"
        if timed_out:
            return None, "timeout"
        if "one statement at a time" in str(e):
            return None, "multiple_statements"
        return None, f"error: {e}"
    finally:
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
    if len(rows) > MAX_ROWS:
        return None, "too_many_rows"
    return rows, None


# ---------------------------------------------------------------------------- databases


class _Analysis:
    """What the reference query says about the columns it uses.

    Columns are keyed ``(table, column)`` in lower case. ``parent`` is a union-find over
    columns that must draw from one domain of values (join keys, IN-subquery columns,
    set-operation columns); ``literals`` the ``(operator, value)`` each column is compared with.
    """

    def __init__(self, schemas: dict[str, list[tuple[str, str]]]):
        self.columns = {t.lower(): {c.lower() for c, _ in cols} for t, cols in schemas.items()}
        self.types = {(t.lower(), c.lower()): d for t, cols in schemas.items() for c, d in cols}
        self.parent: dict[tuple[str, str], tuple[str, str]] = {}
        self.shared: set[tuple[str, str]] = set()
        self.literals: dict[tuple[str, str], list[tuple[str, object]]] = {}
        self.numeric: set[tuple[str, str]] = set()
        self.group_keys: set[tuple[str, str]] = set()
        self.having_counts: list[int] = []

    def find(self, key: tuple[str, str]) -> tuple[str, str]:
        while self.parent.get(key, key) != key:
            key = self.parent[key]
        return key

    def union(self, a: tuple[str, str], b: tuple[str, str]) -> None:
        self.shared.update((a, b))
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def close_classes(self) -> None:
        """Per class root: its literals in query order, whether shared, whether numeric."""
        self.class_literals: dict[tuple[str, str], list[tuple[str, object]]] = {}
        for key, lits in self.literals.items():
            self.class_literals.setdefault(self.find(key), []).extend(lits)
        self.shared_roots = {self.find(k) for k in self.shared}
        numeric = self.numeric | {k for k in self.shared if _is_numeric_type(self.types.get(k, ""))}
        self.numeric_roots = {self.find(k) for k in numeric}

    def resolve(self, col: exp.Column) -> tuple[str, str] | None:
        """The (table, column) a column reference means, looking outwards through SELECTs."""
        name, qualifier = col.name.lower(), col.table.lower()
        node = col.parent
        while node is not None:
            if isinstance(node, exp.Select):
                for alias, table in _own_tables(node):
                    if qualifier and qualifier in (alias, table) and table in self.columns:
                        return table, name
                    if not qualifier and name in self.columns.get(table, ()):
                        return table, name
            node = node.parent
        owners = [t for t, cols in self.columns.items() if name in cols]
        return (owners[0], name) if owners else None


def _own_tables(select: exp.Select) -> list[tuple[str, str]]:
    """(alias, table) of the tables named directly in a SELECT's FROM and JOINs."""
    sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
    found = []
    for source in sources:
        if source is not None and isinstance(source.this, exp.Table):
            table = source.this
            found.append((table.alias_or_name.lower(), table.name.lower()))
    return found


def _tables_in_scope(select: exp.Select) -> list[str]:
    """Tables of a SELECT and of the SELECTs around it (an unqualified column may be outer)."""
    tables = []
    while select is not None:
        tables += [t for _, t in _own_tables(select)]
        select = select.find_ancestor(exp.Select)
    return tables


def _single_column(node: exp.Expression | None) -> exp.Column | None:
    """The one column an expression is built on (``T1.a``, ``MAX(a)``, ``a + 1``), else None."""
    if node is None or isinstance(node, exp.Column):
        return node
    if node.find(exp.Select) is not None:
        return None
    cols = list(node.find_all(exp.Column))
    return cols[0] if len(cols) == 1 else None


def _projections(node: exp.Expression) -> list[exp.Expression]:
    """The SELECT list of a query (the leftmost SELECT of a set operation)."""
    while isinstance(node, (exp.Subquery, exp.Union, exp.Intersect, exp.Except)):
        node = node.this
    return list(node.expressions) if isinstance(node, exp.Select) else []


def _analyse(tree: exp.Expression, schemas: dict[str, list[tuple[str, str]]]) -> _Analysis:
    """Walk the reference (string-like quoted columns already made literals) in query order."""
    a = _Analysis(schemas)

    def key_of(node: exp.Expression | None) -> tuple[str, str] | None:
        col = _single_column(node)
        return a.resolve(col) if col is not None else None

    def link(x: exp.Expression | None, y: exp.Expression | None) -> None:
        kx, ky = key_of(x), key_of(y)
        if kx and ky:
            a.union(kx, ky)

    for node in tree.find_all(*_COMPARISONS, exp.In, exp.Between, bfs=False):
        left = node.this
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                link(left, (_projections(node.args["query"]) or [None])[0])
                continue
            values = node.expressions
        elif isinstance(node, exp.Between):
            values = [node.args.get("low"), node.args.get("high")]
        else:
            left, right = node.this, node.expression
            if _value(left) is not None:
                left, right = right, left
            if _value(right) is None:  # column = column, or column = (SELECT ...)
                link(left, (_projections(right) or [None])[0] if isinstance(right, exp.Subquery) else right)
                continue
            values = [right]
        if left.find(exp.Count) is not None:
            a.having_counts += [v for v in map(_value, values) if isinstance(v, int) and v >= 0]
            continue
        key = key_of(left)
        for v in (_value(x) for x in values if x is not None):
            if key is not None and v is not None:
                a.literals.setdefault(key, []).append((type(node).__name__.lower(), v))
                if not isinstance(v, str):
                    a.numeric.add(key)

    for setop in tree.find_all(exp.Union, exp.Intersect, exp.Except):
        for x, y in zip(_projections(setop.this), _projections(setop.expression)):
            link(x, y)
    for node in tree.find_all(exp.Sum, exp.Avg, exp.Add, exp.Sub, exp.Mul, exp.Div):
        a.numeric.update(k for k in map(a.resolve, node.find_all(exp.Column)) if k)
    for group in tree.find_all(exp.Group):
        a.group_keys.update(k for k in map(a.resolve, group.find_all(exp.Column)) if k)
    return a


def _complete_schema(tree: exp.Expression, schemas: dict[str, list[tuple[str, str]]]) -> dict:
    """The schema plus the columns the reference uses that the context leaves out.

    sql-create-context's contexts miss a column now and then (``WHERE votes > 10000`` with no
    ``votes``). A qualified column goes to its table; an unqualified one to the table in scope
    with the fewest declared columns (where the data set drops them). Added columns are VARCHAR.
    """
    schemas = {t: list(cols) for t, cols in schemas.items()}
    by_lower = {t.lower(): t for t in schemas}
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}

    def has(table: str, name: str) -> bool:
        return any(name.lower() == c.lower() for c, _ in schemas[by_lower[table]])

    for col in tree.find_all(exp.Column):
        name, qualifier = col.name, col.table.lower()
        select = col.find_ancestor(exp.Select)
        if select is None or (not qualifier and name.lower() in aliases):
            continue
        if qualifier:
            scope = [t for alias, t in _own_tables(select) if qualifier in (alias, t) and t in by_lower]
        elif any(has(t, name) for t in _tables_in_scope(select) if t in by_lower):
            continue
        else:
            scope = [t for _, t in _own_tables(select) if t in by_lower]
        if scope:
            table = min(reversed(scope), key=lambda t: len(schemas[by_lower[t]]))
            if not has(table, name):
                schemas[by_lower[table]].append((name, "VARCHAR"))
    return schemas


def _is_numeric_type(declared: str) -> bool:
    """SQLite affinity rules: INT, REAL/FLOA/DOUB and NUMERIC/DECIMAL types are numeric."""
    t = declared.upper()
    if "INT" in t:
        return True
    return bool(t) and not any(word in t for word in ("CHAR", "CLOB", "TEXT", "BLOB"))


def _affinity_type(table: str, column: str, declared: str, a: _Analysis) -> str:
    """The declared type, except NUMERIC for a text column the reference compares with a number.

    The data set declares numbers VARCHAR (``Population VARCHAR`` with ``Population > 1500 OR
    Population < 500``). Under TEXT affinity ``'499' > '1500'``, and such a reference keeps
    every row; NUMERIC affinity compares numbers as the source database did. Strings stored
    there stay strings.
    """
    lits = a.literals.get((table.lower(), column.lower()), ())
    if not _is_numeric_type(declared) and any(not isinstance(v, str) for _, v in lits):
        return "NUMERIC"
    return declared


def _near_values(op: str, v: int | float | str) -> tuple[list, object]:
    """Values next to a literal, and one value that satisfies ``column <op> literal``."""
    if isinstance(v, (int, float)):
        return [v - 1, v, v + 1], {"gt": v + 1, "lt": v - 1, "neq": v + 1}.get(op, v)
    if op in ("like", "ilike"):
        core = v.replace("%", "").replace("_", "a")
        filled = v.replace("%", "zz").replace("_", "q")
        return [core, filled, filled.upper(), "x" + core.lower()], filled
    if op == "glob":
        core = v.replace("*", "").replace("?", "a")
        return [core, core.upper(), "x" + core], core
    near = [v, v.lower(), v.upper(), v.swapcase(), v + " x"]
    if re.fullmatch(r"-?\d+", v):
        near += [str(int(v) - 1), str(int(v) + 1)]
    return list(dict.fromkeys(near)), (v + " x" if op == "neq" else v)


def _fill_table(
    table: str, columns: list[tuple[str, str]], a: _Analysis, n_rows: int, key_domain: int, rng: random.Random,
    variant: int = 0,
) -> list[tuple]:
    """``n_rows`` rows for one table.

    Each column constrained by literals gets their neighbours in the first rows and again in
    about half of the others. The last rows satisfy the conditions: row j takes the j-th
    satisfying value of every column, so the literals of one branch of the query
    (``semester = 'Fall' AND year = 2009``) meet in one row. Then come their boundary rows
    (:func:`_boundary_rows`; database ``variant`` picks which).
    """
    cells, satisfying = [], []
    for name, declared in columns:
        key = (table.lower(), name.lower())
        root = a.find(key)
        required, sat = [], []
        for op, v in a.class_literals.get(root, ()):
            near, s = _near_values(op, v)
            required += near
            sat.append(s)
        required = list(dict.fromkeys(required))
        rng.shuffle(required)
        values = [_generic_value(key, root, declared, a, key_domain, rng) for _ in range(n_rows)]
        for i in range(n_rows):
            if i < len(required):
                values[i] = required[i]
            elif required and rng.random() < 0.5:
                values[i] = rng.choice(required + sat)
        cells.append(values)
        satisfying.append(sat)
    n_sat = min(max(map(len, satisfying), default=0), n_rows // 2)
    for values, sat in zip(cells, satisfying):
        for j in range(n_sat if sat else 0):
            values[n_rows - n_sat + j] = sat[j % len(sat)]
    for (name, _), values in zip(columns, cells):
        if (table.lower(), name.lower()) in a.group_keys and a.having_counts:
            values[:] = _grouped(values, a.having_counts, rng)
    rows = list(zip(*cells))
    if n_sat and not a.having_counts:  # extra rows would change the groups HAVING counts
        rows += _boundary_rows(table, columns, a, rows[n_rows - n_sat:], variant)
    return rows


def _boundary_rows(table: str, columns: list[tuple[str, str]], a: _Analysis, templates: list[tuple],
                   variant: int) -> list[tuple]:
    """Copies of the satisfying rows with one compared column moved next to its literal.

    In database 0 the first satisfying row is copied with each value next to each literal:
    each copy meets every other condition of the row's branch, so that it alone decides
    between ``a > 5 AND b = 'x'`` and ``a >= 5 AND b = 'x'``. Elsewhere, and for the other
    satisfying rows, the copies take the literal only: a row of the second branch of
    ``... WHERE a > 5 INTERSECT ... WHERE a < 2`` moved to ``a = 5`` decides ``>`` vs ``>=``
    only when no copy of it at 6 is in the same database. Columns with no literal and no
    shared domain get values no other row has, so that a DISTINCT projection of a copy does
    not repeat a passing row's value.
    """
    roots = [a.find((table.lower(), name.lower())) for name, _ in columns]
    free = [not a.class_literals.get(r) and r not in a.shared_roots for r in roots]
    out = []
    for t, template in enumerate(templates):
        for ci, root in enumerate(roots):
            for op, v in a.class_literals.get(root, ()):
                near = sorted(_near_values(op, v)[0], key=lambda x: x != v)  # the literal first
                for value in (near if t == 0 and variant == 0 else near[:1]):
                    row = list(template)
                    row[ci] = value
                    k = len(out)
                    for cj, (name, declared) in enumerate(columns):
                        if free[cj]:
                            numeric = _is_numeric_type(declared) or roots[cj] in a.numeric_roots
                            row[cj] = 1000 + k if numeric else f"{name.lower()}_b{k}"
                    out.append(tuple(row))
    return list(dict.fromkeys(out))


def _group_sizes(counts: list[int]) -> list[int]:
    return sorted({max(1, k + d) for k in counts for d in (-1, 0, 1)})


def _grouped(values: list, counts: list[int], rng: random.Random) -> list:
    """Regroup a column so that groups of k-1, k and k+1 rows exist for each HAVING COUNT k."""
    pool = list(dict.fromkeys(values))
    out = []
    for i, size in enumerate(_group_sizes(counts)):
        out += [pool[i % len(pool)]] * size
    out = (out + values)[: len(values)]
    rng.shuffle(out)
    return out


def _generic_value(key, root, declared: str, a: _Analysis, key_domain: int, rng: random.Random):
    """A value with no literal behind it: one shared domain per join class, else per column."""
    numeric = _is_numeric_type(declared) or root in a.numeric_roots
    if root in a.shared_roots:
        k = rng.randint(1, key_domain)
        return k if numeric else f"{root[1]}_{k}"
    if numeric:
        lits = [v for _, v in a.class_literals.get(root, ()) if not isinstance(v, str)]
        if lits:
            return rng.randint(int(min(lits)) - 10, int(max(lits)) + 10)
        # Two digits keep text comparison of numeric-looking VARCHARs in numeric order.
        return rng.randint(10, 99)
    return f"{key[1]}_{rng.randint(1, 5)}"


def synthesize_databases(
    context: str, reference_sql: str, n: int = 3, seed: int = 0, rows_per_table: int = 8
) -> list[sqlite3.Connection]:
    """``n`` in-memory SQLite databases with the context's schema, filled around the reference.

    Tables are created with the declared types (hence SQLite's type affinity), plus any column
    the reference uses that the context leaves out (:func:`_complete_schema`). Every column
    compared with a literal gets the literal and its neighbours (numbers +-1; strings in other
    letter case and a longer string; LIKE patterns filled in), and the last rows of its table
    satisfy the conditions, followed by boundary rows: copies of those with one compared column
    moved next to its literal (:func:`_boundary_rows`), so that ``>`` and ``>=`` differ even under
    ``AND``. Join keys, IN-subquery and set-operation columns share a domain of
    keys whose size changes from database to database (``rows_per_table``, 3, half of it), so
    that joins match and anti-joins (NOT IN, EXCEPT) keep rows on some database. Columns
    compared to numbers, summed or averaged get numbers even when declared VARCHAR (stored as
    numeric-looking text, as in the data set). Columns grouped under ``HAVING COUNT(*) > k``
    get groups of k-1, k and k+1 rows. Deterministic given ``seed``; database i draws from
    ``random.Random(f"{seed}:{i}")``.
    """
    schemas = table_schemas(context)
    tree = _parse(reference_sql.strip().rstrip(";"))
    analysis = _Analysis(schemas)
    if tree is not None:
        _strings_to_literals(tree, set().union(*analysis.columns.values()) if schemas else set())
        schemas = _complete_schema(tree, schemas)
        analysis = _analyse(tree, schemas)
    analysis.close_classes()
    n_rows = rows_per_table
    if analysis.having_counts:
        n_rows = min(MAX_SYNTH_ROWS, max(n_rows, sum(_group_sizes(analysis.having_counts)) + 2))
    databases = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        key_domain = (n_rows, 3, max(4, n_rows // 2))[i % 3]
        conn = sqlite3.connect(":memory:")
        for table, columns in schemas.items():
            if not columns:
                continue
            declared = ", ".join(f'"{c}" {_affinity_type(table, c, t, analysis)}'.strip() for c, t in columns)
            conn.execute(f'CREATE TABLE "{table}" ({declared})')
            rows = _fill_table(table, columns, analysis, n_rows, key_domain, rng, variant=i)
            conn.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(columns))})', rows)
        conn.commit()
        databases.append(conn)
    return databases


# ---------------------------------------------------------------------------- scoring


def _canonical(rows: list[tuple]) -> list[tuple]:
    """Rows with numbers made comparable: 5 == 5.0, floats rounded to 6 decimals."""
    def cell(v):
        if isinstance(v, float):
            return int(v) if v.is_integer() else round(v, 6)
        return v

    return [tuple(cell(v) for v in row) for row in rows]


def _same(pred: list[tuple], ref: list[tuple], ordered: bool) -> bool:
    pred, ref = _canonical(pred), _canonical(ref)
    return pred == ref if ordered else Counter(pred) == Counter(ref)


def _whole_table(tree: exp.Expression | None) -> str | None:
    """The table a plain single-table SELECT reads from, else None."""
    if isinstance(tree, exp.Select):
        tables = _own_tables(tree)
        if len(tables) == 1 and not tree.args.get("joins"):
            return tables[0][1]
    return None


def execution_match(
    prediction_sql: str,
    reference_sql: str,
    context: str,
    n_databases: int = 3,
    seed: int = 0,
    time_budget_s: float = 1.0,
) -> dict:
    """Whether the prediction returns the reference's rows on every synthesized database.

    Rows are compared as multisets, in order when the reference's outermost query has ORDER BY.
    Example: ``{"execution_correct": False, "error": "wrong_result", "degenerate_reference": False}``.
    ``error`` is None when correct, the sandbox reason or ``"wrong_result"`` otherwise, and
    ``"reference_failed: <reason>"`` when the reference itself does not run.
    ``degenerate_reference``: on every database the reference returns nothing, or every row
    of its single FROM table; such items cannot tell queries apart.
    """
    ref_tree = _parse(reference_sql.strip().rstrip(";"))
    ordered = ref_tree is not None and ref_tree.args.get("order") is not None
    whole_table = _whole_table(ref_tree)
    databases = synthesize_databases(context, reference_sql, n=n_databases, seed=seed)
    try:
        references, degenerate = [], []
        for conn in databases:
            rows, reason = run_sandboxed(conn, reference_sql, time_budget_s)
            if reason is not None:
                return {"execution_correct": False, "error": f"reference_failed: {reason}", "degenerate_reference": False}
            references.append(rows)
            size = conn.execute(f'SELECT count(*) FROM "{whole_table}"').fetchone()[0] if whole_table else None
            degenerate.append(not rows or len(rows) == size)
        result = {"execution_correct": True, "error": None, "degenerate_reference": all(degenerate)}
        for conn, ref_rows in zip(databases, references):
            rows, reason = run_sandboxed(conn, prediction_sql, time_budget_s)
            if reason is not None or not _same(rows, ref_rows, ordered):
                result.update(execution_correct=False, error=reason or "wrong_result")
                break
        return result
    finally:
        for conn in databases:
            conn.close()
