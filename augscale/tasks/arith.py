"""Safe arithmetic for GSM8k calculator annotations (``<<48/2=24>>``): no eval, no exec.

Expressions are parsed with :mod:`ast` and only numbers, + - * / // % ** and parentheses are
evaluated, exactly, on :class:`fractions.Fraction`.
"""

from __future__ import annotations

import ast
import re
from fractions import Fraction

ANNOTATION_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
NUMBER_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


class ArithmeticError_(ValueError):
    """An expression that is not plain arithmetic, or that cannot be evaluated (e.g. division by zero)."""


_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: lambda a, b: a % b,
}


def parse_number(text: str) -> Fraction | None:
    """``"$1,234.50"`` -> Fraction(2469, 2); None when the text is not a number."""
    t = text.strip().replace(",", "").replace("$", "").rstrip(".")
    if t.endswith("%"):
        t = t[:-1]
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def evaluate(expr: str) -> Fraction:
    """Evaluate an annotation's left side exactly.

    Raises:
        ArithmeticError_: anything but numbers and arithmetic operators, or a math error.
    """
    cleaned = expr.replace(",", "").replace("$", "").replace("x", "*").replace("×", "*").replace("^", "**")
    cleaned = re.sub(r"(\d)\s*%", r"(\1/100)", cleaned)
    try:
        tree = ast.parse(cleaned.strip(), mode="eval")
    except SyntaxError as e:
        raise ArithmeticError_(f"not arithmetic: {expr!r}") from e
    return _eval(tree.body, expr)


def _eval(node: ast.AST, expr: str) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _eval(node.operand, expr)
        return v if isinstance(node.op, ast.UAdd) else -v
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, expr), _eval(node.right, expr)
        try:
            if isinstance(node.op, ast.Pow):
                if b.denominator != 1 or abs(b) > 64:
                    raise ArithmeticError_(f"unsupported power in {expr!r}")
                return a ** int(b)
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise ArithmeticError_(f"unsupported operator in {expr!r}")
            return Fraction(op(a, b))
        except ZeroDivisionError as e:
            raise ArithmeticError_(f"division by zero in {expr!r}") from e
    raise ArithmeticError_(f"not arithmetic: {expr!r}")


def close_enough(value: Fraction, stated: Fraction) -> bool:
    """Does the exact ``value`` match a ``stated`` result that may be rounded?

    GSM8k writes ``<<10/3=3.33>>``: a stated result with d decimals matches when ``value``
    rounds to it at d decimals (or is within 1e-6 relative).
    """
    if value == stated:
        return True
    decimals = 0
    s = stated
    while s.denominator != 1 and decimals < 8:
        s *= 10
        decimals += 1
    if round(value, decimals) == stated:
        return True
    return abs(value - stated) <= Fraction(1, 10**6) * max(1, abs(stated))


def format_number(value: Fraction) -> str:
    """A Fraction as GSM8k writes numbers: integers bare, others as short decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text


def annotations(solution: str) -> list[tuple[str, str]]:
    """``[(expression, stated_result), ...]`` in the order they appear."""
    return [(m.group(1), m.group(2)) for m in ANNOTATION_RE.finditer(solution)]


def check_annotations(solution: str) -> tuple[bool, str | None, list[dict]]:
    """Verify every annotation of a solution.

    Returns:
        (ok, reason, evidence): reason is ``bad_annotation`` or ``wrong_annotation`` for the
        first failing step; evidence lists each step's expression, stated and computed value.
    """
    evidence: list[dict] = []
    for expr, stated_text in annotations(solution):
        stated = parse_number(stated_text)
        try:
            value = evaluate(expr)
        except ArithmeticError_:
            evidence.append({"expr": expr, "stated": stated_text, "computed": None})
            return False, "bad_annotation", evidence
        evidence.append({"expr": expr, "stated": stated_text, "computed": format_number(value)})
        if stated is None or not close_enough(value, stated):
            return False, "wrong_annotation", evidence
    return True, None, evidence
