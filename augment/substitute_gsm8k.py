"""GSM8k ``substitute``: new numbers in a question, every calculator step recomputed.

GSM-Plus's numerical substitution, with GSM-Symbolic's templates made automatic: the numbers
of the question that feed the solution's ``<<a op b=c>>`` annotations are the template's
variables; the annotations, in order, are its program. A variant draws new values, replays the
program with the safe evaluator of :mod:`augscale.tasks.arith` (no eval, no exec), and rewrites
the question, every annotation, the numbers of the solution's prose and ``#### n``.

What may be substituted (conservative, so that the variant still means what its text says):
a number written in digits in the question, used as an operand of an annotation, written once,
not glued to a fraction, time, range or ordinal (``1/2``, ``3:00``, ``5-10``, ``2nd``), not a
value that a word of the question implies (``twice`` 2, ``dozen`` 12, ``hour`` 60, ``percent``
100: the solution may use that constant, which must not change), and not a value that an
annotation result also takes (the mapping from old to new numbers is by value).

A variant is kept only if every step stays consistent and keeps its kind: an integer result
stays an integer, a positive one positive, a decimal one a short exact decimal, and ``#### n``
is the recomputed value of an annotation (or a substituted number). Numbers are mapped by
value, so a value whose new value would be ambiguous rejects the variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

from pydantic import Field

from augscale.augment.strategies import Candidate, Strategy, StrategyParams, register_strategy
from augscale.tasks.arith import (ANNOTATION_RE, ArithmeticError_, check_annotations, evaluate, format_number,
                                  parse_number)
from augscale.tasks.gsm8k import final_answer

# A number as the question writes it: optional $, thousands separators, decimals, optional %.
_NUM_RE = re.compile(r"(?P<dollar>\$\s?)?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<pct>\s?%)?")
# Numbers inside an annotation's expression (operators separate them; no sign: '-' is an operator).
_EXPR_NUM_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_FINAL_LINE_RE = re.compile(r"####\s*(?P<sign>-?)\s*\$?\s*(?P<num>[\d,]*\.?\d+)")
_WORD_RE = re.compile(r"[a-z]+")
_UNARY_MINUS_RE = re.compile(r"(?:^|[-+*/(])\s*-")

# Values a word implies: the solution may use them as constants, so a question number with that
# value is never substituted ("half" -> /2, "dozen" -> *12, "minutes" -> /60).
_IMPLIED: dict[str, tuple[int, ...]] = {
    "half": (2,), "halves": (2,), "twice": (2,), "double": (2,), "doubles": (2,), "doubled": (2,),
    "pair": (2,), "pairs": (2,), "couple": (2,), "both": (2,), "triple": (3,), "tripled": (3,),
    "thrice": (3,), "third": (3,), "thirds": (3,), "quarter": (4, 25), "quarters": (4, 25),
    "fourth": (4,), "fifth": (5,), "tenth": (10,), "dozen": (12,), "dozens": (12,), "score": (20,),
    "one": (1,), "two": (2,), "three": (3,), "four": (4,), "five": (5,), "six": (6,), "seven": (7,),
    "eight": (8,), "nine": (9,), "ten": (10,), "eleven": (11,), "twelve": (12,), "fifteen": (15,),
    "twenty": (20,), "thirty": (30,), "forty": (40,), "fifty": (50,), "hundred": (100,),
    "thousand": (1000,), "million": (1000000,),
    "second": (60,), "seconds": (60,), "minute": (60,), "minutes": (60,), "hour": (60, 24),
    "hours": (60, 24), "hourly": (60, 24), "day": (24, 7, 30, 365), "days": (24, 7, 30, 365),
    "daily": (7, 30, 365), "week": (7, 52), "weeks": (7, 52), "weekly": (7, 52), "weekend": (2,),
    "weekends": (2,), "weekday": (5,), "weekdays": (5,), "month": (12, 30, 31, 4),
    "months": (12, 30, 31, 4), "monthly": (12,), "year": (12, 52, 365), "years": (12, 52, 365),
    "yearly": (12, 52, 365), "annual": (12, 52, 365), "decade": (10,), "decades": (10,),
    "century": (100,), "percent": (100,), "percentage": (100,), "cent": (100,), "cents": (100,),
    "dollar": (100,), "dollars": (100,), "foot": (12, 3), "feet": (12, 3), "inch": (12,), "inches": (12,),
    "yard": (3, 36), "yards": (3, 36), "meter": (100, 1000), "meters": (100, 1000), "kilometer": (1000,),
    "kilometers": (1000,), "centimeter": (100,), "centimeters": (100,), "gram": (1000,), "grams": (1000,),
    "kilogram": (1000,), "kilograms": (1000,), "pound": (16,), "pounds": (16,), "ounce": (16,),
    "ounces": (16,), "gallon": (4, 128), "gallons": (4, 128), "quart": (4, 2), "quarts": (4, 2),
    "pint": (2,), "pints": (2,), "liter": (1000,), "liters": (1000,), "mile": (5280,), "miles": (5280,),
}
_MAX_VALUE = Fraction(10**7)


@dataclass
class QNumber:
    """A number written in the question: its span, value and how it is written."""

    start: int
    end: int
    value: Fraction
    decimals: int
    percent: bool


def question_numbers(question: str) -> list[QNumber]:
    """Numbers in the question that could be substituted as far as their surroundings go."""
    found = []
    for m in _NUM_RE.finditer(question):
        before = question[m.start() - 1] if m.start() else " "
        after = question[m.end():m.end() + 2]
        if before.isalnum() or before in "_/.:,^-":  # a negative number or a range is left alone
            continue
        if after[:1].isalpha() or after[:1] in "/:^_" or (after[:1] == "-" and after[1:2].isdigit()):
            continue
        num = m.group("num")
        decimals = len(num.split(".")[1]) if "." in num else 0
        found.append(QNumber(m.start(), m.end(), Fraction(num.replace(",", "")), decimals, bool(m.group("pct"))))
    return found


def implied_values(question: str) -> set[Fraction]:
    """Values the question's words imply (``dozen`` 12, ``hours`` 60 and 24, ...)."""
    return {Fraction(v) for w in _WORD_RE.findall(question.lower()) for v in _IMPLIED.get(w, ())}


@dataclass
class Step:
    """One annotation ``<<expr=stated>>``: its operands' spans in the expression and its result."""

    span: tuple[int, int]        # span of the whole ``<<...>>`` in the solution
    expr: str
    operands: list[tuple[int, int, Fraction]]  # (start, end, value) inside expr
    result: Fraction


def parse_steps(solution: str) -> list[Step] | None:
    """The annotations of a verified solution (None if a result is not exact, e.g. ``10/3=3.33``)."""
    steps = []
    for m in ANNOTATION_RE.finditer(solution):
        expr = m.group(1)
        try:
            value = evaluate(expr)
        except ArithmeticError_:
            return None
        stated = parse_number(m.group(2))
        if stated is None or stated != value:
            return None
        operands = [(o.start(), o.end(), Fraction(o.group().replace(",", ""))) for o in _EXPR_NUM_RE.finditer(expr)]
        steps.append(Step(m.span(), expr, operands, value))
    return steps


def substitutable(question: str, steps: list[Step]) -> list[QNumber]:
    """The question numbers that are variables of the solution's program (module docstring)."""
    numbers = question_numbers(question)
    values = all_values(question)
    operands = {v for s in steps for _, _, v in s.operands}
    results = {s.result for s in steps}
    implied = implied_values(question)
    q_values = {n.value for n in numbers}
    # Constants the solution uses that are not question numbers or earlier results: if one is a
    # derived form of a question number (20% written as 0.2 or 0.8), that number must stay.
    constants = operands - q_values - results
    keep = []
    for n in numbers:
        v = n.value
        if v in (0, 1) or v not in operands or v in results or v in implied or values.count(v) != 1:
            continue
        derived = {v / 100, 1 - v / 100, 1 + v / 100, 100 - v, v / 10, 100 + v}
        if constants & derived:
            continue
        keep.append(n)
    return keep


def all_values(question: str) -> list[Fraction]:
    """The value of every number in the question, whatever surrounds it ('written once' rule)."""
    return [Fraction(m.group("num").replace(",", "")) for m in _NUM_RE.finditer(question)]


def propose(n: QNumber, rng) -> Fraction:
    """A new value written like the old one: same decimals, similar size and roundness."""
    scale = 10 ** n.decimals
    v = int(n.value * scale)
    if n.decimals == 0 and 1900 <= v <= 2100:  # a year
        return Fraction(v + rng.choice([d for d in range(-25, 26) if d]))
    step = 1
    for s in (1000, 500, 100, 50, 25, 10, 5):
        if v % s == 0 and v > s:
            step = s
            break
    if v <= 12 and n.decimals == 0:
        lo, hi = 2, 15
    else:
        lo, hi = max(step, v // 2), max(v * 2, v + 3 * step)
        if n.percent:
            hi = min(hi, 100 if v <= 100 else hi)
    k_lo, k_hi = -(-lo // step), hi // step
    if k_hi <= k_lo:
        return Fraction(v + step, scale)
    k = rng.randint(k_lo, k_hi - 1)
    if k * step >= v:  # skip the old value: draw from the range without it
        k += 1
    return Fraction(k * step, scale)


def render(value: Fraction, like: str) -> str | None:
    """``value`` written the way the number ``like`` is (decimals, thousands separators).

    ``render(Fraction(8), "7.50")`` -> ``"8.00"``; ``render(Fraction(1, 4), "0.2")`` -> ``"0.25"``;
    None when the value has no short exact decimal form (``1/3``).
    """
    decimals = len(like.split(".")[1]) if "." in like else 0
    scaled = value * 10**decimals
    if decimals and scaled.denominator == 1:
        digits = str(abs(scaled.numerator)).rjust(decimals + 1, "0")
        text = ("-" if value < 0 else "") + digits[:-decimals] + "." + digits[-decimals:]
    else:
        text = format_number(value)
        if Fraction(text) != value:
            return None
    if "," in like:
        whole, dot, frac = text.partition(".")
        text = ("-" if whole.startswith("-") else "") + f"{int(whole.lstrip('-')):,}" + dot + frac
    return text


def _kind_ok(old: Fraction, new: Fraction) -> str | None:
    """None when ``new`` keeps ``old``'s kind, else the rejection reason."""
    if old.denominator == 1 and new.denominator != 1:
        return "non_integer_result"
    if old.denominator != 1:
        den = new.denominator
        while den % 2 == 0:
            den //= 2
        while den % 5 == 0:
            den //= 5
        if den != 1 or len(format_number(new).partition(".")[2]) > 4:
            return "inexact_result"
    if old >= 0 > new:
        return "negative_result"
    if old != 0 and new == 0:
        return "zero_result"
    if abs(new) > _MAX_VALUE:
        return "too_large"
    return None


def fixed_values(question: str, steps: list[Step]) -> set[Fraction]:
    """Values that must not change and must not be taken: the question's numbers (but those
    being substituted), the values its words imply, and the constants of the annotations
    (operands that are no question number and no earlier result)."""
    q_values = set(all_values(question))
    results = {s.result for s in steps}
    constants = {v for s in steps for _, _, v in s.operands} - q_values - results
    return q_values | implied_values(question) | constants


def apply(question: str, solution: str, steps: list[Step], chosen: list[QNumber],
          new_values: list[Fraction], fixed: set[Fraction] | None = None) -> tuple[str, str, str] | str:
    """Rewrite question and solution with new values; ``(question, solution, answer)`` or a reason.

    Reasons: a step's result changes kind (``non_integer_result``, ``negative_result``, ...), or
    ``ambiguous_number``: a value that changed is also one that must stay (``two sandwiches``
    when an earlier result was 2), so which of them a later ``2`` means cannot be known.
    """
    fixed = (fixed_values(question, steps) if fixed is None else fixed) - {n.value for n in chosen}
    results = {s.result for s in steps}
    if any(v in fixed or v in results for v in new_values) or len(set(new_values)) < len(new_values):
        return "value_collision"
    qmap: dict[Fraction, Fraction] = {n.value: v for n, v in zip(chosen, new_values)}
    replayed = replay(steps, qmap, fixed)
    if isinstance(replayed, str):
        return replayed
    new_steps, rmap = replayed
    vmap: dict[Fraction, set[Fraction]] = {k: set(v) for k, v in rmap.items()}
    for k, v in qmap.items():
        vmap.setdefault(k, set()).add(v)
    # The question: substituted numbers, right to left so spans stay valid.
    new_q = question
    for n, v in sorted(zip(chosen, new_values), key=lambda p: -p[0].start):
        token = _rewrite_token(question[n.start:n.end], v)
        if token is None:
            return "unwritable_number"
        new_q = new_q[:n.start] + token + new_q[n.end:]
    # The solution: annotations replaced, prose numbers mapped by value.
    pieces, last = [], 0
    for s, (expr, value) in zip(steps, new_steps):
        prose = _map_prose(solution[last:s.span[0]], vmap, fixed)
        if prose is None:
            return "ambiguous_number"
        pieces.append(prose)
        pieces.append(f"<<{expr}={format_number(value)}>>")
        last = s.span[1]
    tail = solution[last:]
    body, sep, _ = tail.rpartition("####")
    if not sep:
        return "no_final_answer"
    prose = _map_prose(body, vmap, fixed)
    if prose is None:
        return "ambiguous_number"
    pieces.append(prose)
    old_final = Fraction(final_answer(solution))
    news = vmap.get(old_final)
    if not news:
        return "final_not_recomputed"
    if len(news) > 1:
        return "ambiguous_number"
    new_final = next(iter(news))
    reason = _kind_ok(old_final, new_final)
    if reason:
        return reason
    pieces.append("#### " + format_number(new_final))
    return new_q, "".join(pieces), format_number(new_final)


def replay(steps: list[Step], qmap: dict[Fraction, Fraction], fixed: set[Fraction]
           ) -> tuple[list[tuple[str, Fraction]], dict[Fraction, set[Fraction]]] | str:
    """Run the solution's program on new inputs, step by step.

    An operand that equals an earlier step's old result takes that step's new result; one that
    equals a substituted question number takes its new value; any other operand is a constant.

    Returns:
        ``([(new expression, new result), ...], {old result: {new results}})``, or the reason
        the variant fails (a step changes kind, or a changed value is ambiguous).
    """
    rmap: dict[Fraction, set[Fraction]] = {}
    new_steps: list[tuple[str, Fraction]] = []
    for s in steps:
        expr, shift = s.expr, 0
        for start, end, v in s.operands:
            news = rmap.get(v)
            if news is not None and len(news) > 1:
                return "ambiguous_number"
            new = next(iter(news)) if news else qmap.get(v)
            if new is None or new == v:
                continue
            if v in fixed:
                return "ambiguous_number"
            text = format_number(new)
            expr = expr[:start + shift] + text + expr[end + shift:]
            shift += len(text) - (end - start)
        try:
            value = evaluate(expr)
        except ArithmeticError_:
            return "bad_annotation"
        reason = _kind_ok(s.result, value)
        if reason:
            return reason
        rmap.setdefault(s.result, set()).add(value)
        new_steps.append((expr, value))
    return new_steps, rmap


def _rewrite_token(token: str, value: Fraction) -> str | None:
    """A question number token (``$1,200``, ``25%``, ``2.50``) with a new value, written the same way."""
    m = _NUM_RE.fullmatch(token)
    text = render(value, m.group("num"))
    if text is None:
        return None
    return (m.group("dollar") or "") + text + (m.group("pct") or "")


def _map_prose(text: str, vmap: dict[Fraction, set[Fraction]], fixed: set[Fraction]) -> str | None:
    """Replace each number of solution prose whose value changed; None if a value is ambiguous
    (it maps to two new values, or it changed but is also a value that must stay)."""
    out, last = [], 0
    for m in _NUM_RE.finditer(text):
        before = text[m.start() - 1] if m.start() else " "
        if before.isalnum() or before in "_":
            continue
        old = Fraction(m.group("num").replace(",", ""))
        news = vmap.get(old)
        if not news:
            continue
        if len(news) > 1:
            return None
        new = next(iter(news))
        if new == old:
            continue
        if old in fixed:
            return None
        written = render(new, m.group("num"))
        if written is None:
            written = format_number(new)
        out.append(text[last:m.start("num")])
        out.append(written)
        last = m.end("num")
    out.append(text[last:])
    return "".join(out)


class GSM8kSubstituteParams(StrategyParams):
    """Params of gsm8k ``substitute``."""

    variants_per_seed: int = Field(3, ge=1, le=50, description="variants attempted per seed question")
    max_tries: int = Field(30, ge=1, le=1000, description="draws of new values per variant before giving up")


@register_strategy
class GSM8kSubstitute(Strategy):
    """New numbers in GSM8k questions, every annotation recomputed (module docstring).

    One output row (a candidate that passed):
    ``{"id": "gsm8k-train-00001~substitute-0", "prompt": "Weng earns $15 an hour for babysitting.
    Yesterday, she just did 40 minutes of babysitting. How much did she earn?", "target": "Weng
    earns 15/60 = $<<15/60=0.25>>0.25 per minute.\\nWorking 40 minutes, she earned 0.25 x 40 =
    $<<0.25*40=10>>10.\\n#### 10", "answer": "10", "source": "substitute",
    "parent_id": "gsm8k-train-00001", ...}``
    """

    name = "substitute"
    task = "gsm8k"
    Params = GSM8kSubstituteParams
    input_columns = ("id", "prompt", "target", "answer")

    def generate(self, seeds: list[dict[str, Any]]) -> Iterable[Candidate]:
        variants = int(self.params.get("variants_per_seed", 3))
        tries = int(self.params.get("max_tries", 30))
        for seed in seeds:
            yield from self._variants(seed, variants, tries)

    def _variants(self, seed: dict[str, Any], variants: int, tries: int) -> Iterable[Candidate]:
        pid, question, solution = seed["id"], seed["prompt"], seed["target"]
        ok, _, _ = check_annotations(solution)
        steps = parse_steps(solution) if ok and final_answer(solution) is not None else None
        if steps is None:
            for i in range(variants):
                yield Candidate.reject(pid, i, "seed_not_exact")
            return
        if any(s.result < 0 or _UNARY_MINUS_RE.search(s.expr) for s in steps):
            # Numbers are mapped unsigned (``-21`` in prose reads as 21): signed seeds are skipped.
            for i in range(variants):
                yield Candidate.reject(pid, i, "negative_numbers")
            return
        numbers = substitutable(question, steps)
        if not numbers:
            for i in range(variants):
                yield Candidate.reject(pid, i, "no_substitutable_number")
            return
        rng = self.rng(pid)
        fixed = fixed_values(question, steps)
        seen = {question}
        for i in range(variants):
            reason = "no_new_variant"
            for attempt in range(tries):
                # First try every variable at once (furthest from the seed), then random subsets.
                if attempt < tries // 2 or len(numbers) == 1:
                    chosen = list(numbers)
                else:
                    chosen = rng.sample(numbers, rng.randint(1, len(numbers)))
                chosen.sort(key=lambda n: n.start)
                values = [propose(n, rng) for n in chosen]
                out = apply(question, solution, steps, chosen, values, fixed)
                if isinstance(out, str):
                    reason = out
                    continue
                new_q, new_sol, answer = out
                if new_q in seen:
                    reason = "no_new_variant"
                    continue
                seen.add(new_q)
                subst = {format_number(n.value): format_number(v) for n, v in zip(chosen, values)}
                yield Candidate(pid, i, prompt=new_q, target=new_sol, answer=answer,
                                evidence={"substituted": subst, "tries": attempt + 1})
                break
            else:
                yield Candidate.reject(pid, i, reason)
