"""Execution-based text-to-SQL scoring (augscale.tasks.sqlexec): sandbox, near misses, real data.

The synthesized databases are deterministic (seeded), so the shares measured on the real data
are pinned just under their measured values: a drop means the synthesis lost power.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
from sqlglot import exp

from augscale.tasks import get_task
from augscale.tasks.sqlexec import (
    _execute_guarded,
    execution_match,
    extract_sql,
    literal_values,
    normalize_sql,
    run_sandboxed,
    sql_difficulty,
    synthesize_databases,
    table_schemas,
)

CONTEXT = "CREATE TABLE people (id INTEGER, name VARCHAR, age INTEGER, city VARCHAR, salary INTEGER)"
REFERENCE = "SELECT name FROM people WHERE age > 30 AND city = 'Paris'"
ENDLESS_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
BUDGET_S = 0.5

# (query, the reason run_sandboxed gives). DDL/DML/ATTACH/PRAGMA stop at the sqlglot check;
# load_extension parses as a SELECT and is stopped by the authorizer.
HOSTILE = [
    ("DROP TABLE people", "not_a_select"),
    ("DELETE FROM people", "not_a_select"),
    ("INSERT INTO people VALUES (1, 'x', 2, 'y', 3)", "not_a_select"),
    ("UPDATE people SET age = 0", "not_a_select"),
    ("SELECT 1; DROP TABLE people", "multiple_statements"),
    ("ATTACH DATABASE ':memory:' AS x", "not_a_select"),
    ("PRAGMA table_info(people)", "not_a_select"),
    ("PRAGMA writable_schema=1", "not_a_select"),
    ("SELECT load_extension('x')", "denied: load_extension"),
    (ENDLESS_CTE, "timeout"),
]


def _fingerprint(conn) -> tuple:
    """(schema, {table: (row count, sha256 of the sorted rows)}) read outside the sandbox."""
    schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    tables = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        rows = sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
        tables[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return schema, tables


@pytest.fixture()
def conn():
    (db,) = synthesize_databases(CONTEXT, REFERENCE, n=1)
    yield db
    db.close()


# ---------------------------------------------------------------------------- sandbox


@pytest.mark.timeout(60)  # an endless CTE that is not interrupted fails here instead of hanging
@pytest.mark.parametrize("sql, reason", HOSTILE, ids=[r for _, r in HOSTILE][:4] + [q[:12] for q, _ in HOSTILE[4:]])
def test_sandbox_refuses_with_reason_and_leaves_data_untouched(conn, sql, reason):
    before = _fingerprint(conn)
    assert before[1]["people"][0] == 16  # rows_per_table, and 8 boundary rows (3 ages, 5 spellings of the city)
    rows, got = run_sandboxed(conn, sql, time_budget_s=BUDGET_S)  # the endless CTE returns: interrupted
    assert (rows, got) == (None, reason)
    assert _fingerprint(conn) == before
    assert not conn.in_transaction
    # The connection stays usable and unguarded for the caller afterwards.
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (16,)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sql, reason", HOSTILE, ids=[r for _, r in HOSTILE][:4] + [q[:12] for q, _ in HOSTILE[4:]])
def test_hostile_predictions_are_scored_wrong_with_their_reason(sql, reason):
    res = execution_match(sql, REFERENCE, CONTEXT, time_budget_s=BUDGET_S)
    assert res == {"execution_correct": False, "error": reason, "degenerate_reference": False}


@pytest.mark.parametrize("sql, reason", [
    ("DROP TABLE people", "denied: delete"),  # SQLite first asks to delete from sqlite_master
    ("DELETE FROM people", "denied: delete"),
    ("INSERT INTO people VALUES (1, 'x', 2, 'y', 3)", "denied: insert"),
    ("UPDATE people SET age = 0", "denied: update"),
    ("CREATE TABLE u (x)", "denied: insert"),
    ("ATTACH DATABASE ':memory:' AS x", "denied: attach"),
    ("PRAGMA table_info(people)", "denied: pragma"),
    ("PRAGMA writable_schema=1", "denied: pragma"),
    ("BEGIN", "denied: transaction"),
    ("SELECT 1; DROP TABLE people", "multiple_statements"),
])
def test_authorizer_alone_denies_writes(conn, sql, reason):
    """The layer under the sqlglot check, for SQL that sqlglot cannot parse but SQLite runs."""
    before = _fingerprint(conn)
    assert _execute_guarded(conn, sql, BUDGET_S) == (None, reason)
    assert _fingerprint(conn) == before


def test_sandbox_other_reasons(conn):
    assert run_sandboxed(conn, "  ;  ") == (None, "empty")
    assert run_sandboxed(conn, "SELECT * FROM people p1, people p2, people p3, people p4, people p5") == (
        None, "too_many_rows")  # 16**5 rows > MAX_ROWS
    rows, reason = run_sandboxed(conn, "SELECT nope FROM people")
    assert rows is None and reason.startswith("error: ") and "nope" in reason
    rows, reason = run_sandboxed(conn, "SELECT count(*) FROM people;")
    assert (rows, reason) == ([(16,)], None)


def test_boundary_rows_meet_the_other_conditions():
    dbs = synthesize_databases(CONTEXT, REFERENCE, n=3)
    try:
        # database 0: the satisfying row (age 31, 'Paris') copied at each value next to each
        # literal, the other condition kept, the free columns new (a DISTINCT name is not repeated)
        first = dbs[0]
        assert {a for (a,) in first.execute("SELECT age FROM people WHERE city = 'Paris'")} >= {29, 30, 31}
        cities = {c for (c,) in first.execute("SELECT city FROM people WHERE age = 31")}
        assert cities >= {"Paris", "paris", "PARIS", "pARIS", "Paris x"}
        names = [n for (n,) in first.execute("SELECT name FROM people WHERE name LIKE 'name_b%'")]
        assert len(names) == len(set(names)) == 8
        for db in dbs[1:]:  # the others: copies at the literal itself
            assert db.execute("SELECT count(*) FROM people WHERE age = 30 AND city = 'Paris'").fetchone()[0] >= 1
    finally:
        for db in dbs:
            db.close()


# ---------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("reference, prediction", [
    ("SELECT name FROM people WHERE age > 30", "SELECT name FROM people WHERE age >= 30"),
    ("SELECT name FROM people WHERE city = 'Paris'", "SELECT name FROM people WHERE city = 'paris'"),
    ('SELECT name FROM people WHERE city = "Paris"', "SELECT name FROM people WHERE city = 'paris'"),
    ("SELECT name FROM people WHERE city = 'Paris'", "SELECT name FROM people"),
    ("SELECT COUNT(salary) FROM people WHERE age > 30", "SELECT SUM(salary) FROM people WHERE age > 30"),
    ("SELECT name FROM people WHERE age > 30", "SELECT city FROM people WHERE age > 30"),
    ("SELECT name FROM people ORDER BY age LIMIT 3", "SELECT name FROM people ORDER BY age LIMIT 2"),
], ids=["gt_vs_gte", "string_case", "spider_double_quotes_case", "dropped_where", "count_vs_sum",
        "wrong_column", "limit"])
def test_near_misses_are_wrong(reference, prediction):
    assert execution_match(prediction, reference, CONTEXT) == {
        "execution_correct": False, "error": "wrong_result", "degenerate_reference": False}


@pytest.mark.parametrize("prediction", [
    REFERENCE,
    "SELECT p.name FROM people AS p WHERE p.age > 30 AND p.city = 'Paris'",
    "SELECT name FROM people WHERE city = 'Paris' AND age > 30",
    "select   name\nfrom PEOPLE where CITY='Paris'\n  and AGE>30 ;",
    'SELECT name FROM people WHERE age > 30 AND city = "Paris"',
], ids=["itself", "alias", "reordered_and", "whitespace_case", "double_quoted_string"])
def test_equivalent_predictions_are_right(prediction):
    assert execution_match(prediction, REFERENCE, CONTEXT) == {
        "execution_correct": True, "error": None, "degenerate_reference": False}


def test_order_matters_only_when_the_reference_orders():
    ordered = "SELECT name, age FROM people WHERE age > 30 ORDER BY age"
    unordered = "SELECT name, age FROM people WHERE age > 30"
    reversed_ = "SELECT name, age FROM people WHERE age > 30 ORDER BY age DESC"
    # The reversal really changes the order (at least two distinct ages pass the filter).
    dbs = synthesize_databases(CONTEXT, ordered)
    assert any(len({a for _, a in db.execute(ordered).fetchall()}) >= 2 for db in dbs)
    assert execution_match(reversed_, ordered, CONTEXT)["error"] == "wrong_result"
    assert execution_match(reversed_, unordered, CONTEXT)["execution_correct"] is True
    assert execution_match(unordered, unordered, CONTEXT)["execution_correct"] is True


def test_degenerate_reference_flag():
    whole = execution_match("SELECT name FROM people", "SELECT name FROM people", CONTEXT)
    assert whole == {"execution_correct": True, "error": None, "degenerate_reference": True}
    selective = execution_match(REFERENCE, REFERENCE, CONTEXT)
    assert selective["degenerate_reference"] is False
    never = "SELECT name FROM people WHERE age > 30 AND age < 30"  # empty on every database
    assert execution_match(never, never, CONTEXT)["degenerate_reference"] is True
    # any prediction that also returns nothing passes: such an item cannot tell queries apart
    assert execution_match("SELECT name FROM people WHERE 1 = 0", never, CONTEXT)["execution_correct"] is True


def test_failing_reference_is_reported_not_raised():
    res = execution_match("SELECT 1", "SELECT nope FROM missing_table", CONTEXT)
    assert res["execution_correct"] is False and res["error"].startswith("reference_failed: error: ")


# ---------------------------------------------------------------------------- text


@pytest.mark.parametrize("text, sql", [
    ("<SQL> SELECT a FROM t; </SQL> because a is asked", "SELECT a FROM t"),
    ("<sql>SELECT a FROM t", "SELECT a FROM t"),  # unclosed tag
    ("Here:\n```sql\nSELECT a FROM t;\n```\nDone.", "SELECT a FROM t"),
    ("```sqlite\nSELECT a FROM t\n```", "SELECT a FROM t"),
    ("```\nSELECT a FROM t\n```", "SELECT a FROM t"),
    ("SELECT a FROM t;<END_A> junk <SQL>SELECT b FROM u</SQL>", "SELECT a FROM t"),
    ("  SELECT a FROM t ;  \n", "SELECT a FROM t"),
    ("SELECT a FROM t;;", "SELECT a FROM t"),
])
def test_extract_sql(text, sql):
    assert extract_sql(text) == sql


def test_normalize_sql():
    assert normalize_sql('select  Name from T where city = "Paris";') == normalize_sql(
        "SELECT name FROM t WHERE city = 'Paris'") == "select name from t where city = 'Paris'"
    assert normalize_sql("SELECT name FROM t WHERE city = 'Paris'") != normalize_sql(
        "SELECT name FROM t WHERE city = 'paris'")  # string literals keep their case
    assert normalize_sql("SELEC  Foo 'Bar' ((") == "selec foo 'Bar' (("  # unparseable: whitespace/case


def test_table_schemas_and_literals():
    assert table_schemas("CREATE TABLE head (age INTEGER, name VARCHAR); CREATE TABLE d (x)") == {
        "head": [("age", "INT"), ("name", "VARCHAR")], "d": [("x", "")]}
    values = literal_values('SELECT a FROM t WHERE b > -3 AND c = "Paris" AND d < 2.5')
    assert sorted(values, key=repr) == sorted([-3, "Paris", 2.5], key=repr)  # negative kept, "Paris" a string


def test_sql_difficulty():
    plain = sql_difficulty("SELECT name FROM t")
    structured = sql_difficulty(
        "SELECT T1.a, COUNT(*) FROM t AS T1 JOIN u AS T2 ON T1.id = T2.id GROUP BY T1.a HAVING COUNT(*) > 2")
    flat = sql_difficulty("SELECT name FROM t WHERE a = 1")
    nested = sql_difficulty("SELECT name FROM t WHERE a IN (SELECT a FROM u)")
    assert plain == 0.0 and structured > plain
    assert structured == 5.0  # join 1 + two COUNTs 2 + GROUP BY 1 + HAVING 1
    assert nested >= flat + 2  # the nested SELECT adds 2
    assert sql_difficulty("not sql (((") == 0.0


# ---------------------------------------------------------------------------- task wrapper


def test_sql_task_score():
    task = get_task("sql")
    keys = {"exact", "execution_correct", "correct", "error", "degenerate_reference"}

    same = task.score(f"<START_A>{REFERENCE}<END_A>", REFERENCE, CONTEXT)
    assert set(same) == keys
    assert same == {"exact": True, "execution_correct": True, "correct": True, "error": None,
                    "degenerate_reference": False}

    alias = task.score("SELECT p.name FROM people AS p WHERE p.city = 'Paris' AND p.age > 30", REFERENCE, CONTEXT)
    assert alias["exact"] is False and alias["correct"] is True

    wrong = task.score("SELECT name FROM people WHERE age >= 30 AND city = 'Paris'", REFERENCE, CONTEXT)
    assert wrong["correct"] is False and wrong["error"] == "wrong_result"

    hostile = task.score("DROP TABLE people", REFERENCE, CONTEXT)
    assert hostile["correct"] is False and hostile["error"] == "not_a_select"


# ---------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def sql_rows(data_dir):
    path = data_dir / "sql-create-context" / "train.jsonl"
    if not path.is_file():
        pytest.fail(f"{path} not found (set AUGSCALE_TEST_DATA_DIR)")
    with path.open() as f:
        return [json.loads(line) for line in itertools.islice(f, 1500)]


def test_real_references_execute_and_match_themselves(sql_rows):
    # Measured: 1000/1000 of the first 1000 rows; 300 here to stay fast.
    failures = []
    for r in sql_rows[:300]:
        res = execution_match(r["answer"], r["answer"], r["context"])
        if not res["execution_correct"]:
            failures.append((r["answer"], res["error"]))
    assert failures == []


def _gt_to_gte(sql: str) -> str | None:
    """The query with its first WHERE ``column > number`` made ``>=``; None when it has none."""
    tree = exp.maybe_parse(sql, dialect="sqlite")
    for gt in tree.find_all(exp.GT):
        if gt.find_ancestor(exp.Where) is None:
            continue
        right = gt.expression.this if isinstance(gt.expression, exp.Neg) else gt.expression
        if isinstance(right, exp.Literal) and not right.is_string:
            gt.replace(exp.GTE(this=gt.this.copy(), expression=gt.expression.copy()))
            return tree.sql(dialect="sqlite")
    return None


def test_real_gt_vs_gte_is_told_apart(sql_rows):
    swapped = [(s, r) for r in sql_rows if (s := _gt_to_gte(r["answer"])) is not None][:100]
    assert len(swapped) == 100  # within the first 1321 rows
    told = sum(not execution_match(s, r["answer"], r["context"])["execution_correct"] for s, r in swapped)
    # Measured 87/100 (76 before the boundary rows of _boundary_rows). The misses: INTERSECT of
    # two ranges whose boundary row shares its projected value with a row of the other side (5),
    # DISTINCT projections through a join, whose boundary row's key reaches a value a passing
    # row also reaches (4), GROUP BY with HAVING (no boundary rows: they would change the
    # groups) (2), and a NOT IN or ORDER BY ... LIMIT 1 that hides the boundary row (2).
    assert told >= 85
