"""Prompt templates (files under ``augscale/prompts/``) and the parsing of what models answer.

A template is a text file with ``{field}`` placeholders (Python ``str.format``; a literal brace
is written twice). Its SHA-256 goes into every row's ``meta`` and into the strategy's cache key,
so that editing a template regenerates what it made. A strategy names its templates by role
(``question``, ``solve``...); ``params.prompts`` replaces any of them with another file::

    prompts: {solve: my_prompts/solve_terse.txt}

Parsing is lenient about form (code fences, a leading ``Question:`` label, quotes) and strict
about content: a refusal or an answer without the expected parts is a counted rejection.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path

import augscale
from augscale.augment.strategies import StrategyError

PROMPTS_DIR = Path(augscale.__file__).resolve().parent / "prompts"


@dataclass(frozen=True)
class Template:
    """A loaded prompt template: its name, text, fields and hash."""

    name: str
    text: str
    sha256: str

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.text) if f}

    def render(self, **values: object) -> str:
        """The prompt with its fields filled in.

        Raises:
            KeyError: a field of the template has no value.
        """
        return self.text.format(**values)

    def evidence(self) -> dict[str, str]:
        """What a row's ``meta`` records about the template."""
        return {"name": self.name, "sha256": self.sha256}


def available_templates() -> list[str]:
    """The names of the built-in templates (files in ``augscale/prompts``, without ``.txt``)."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.txt"))


def load_template(name_or_path: str, required_fields: set[str] | frozenset[str] = frozenset()) -> Template:
    """A built-in template by name (``gsm8k_rephrase``) or a template file by path.

    Raises:
        StrategyError: no such template (lists the built-in ones), an unreadable file, a
            malformed placeholder, or a template that lacks a field the strategy fills in.
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PROMPTS_DIR / f"{name_or_path}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise StrategyError(f"prompt template {name_or_path!r}: cannot read {path} ({e.strerror}). Built-in "
                            f"templates: {', '.join(available_templates())}") from None
    # built-in: its name (found again in the package on each worker); a user's file: its absolute path
    name = path.stem if path.parent == PROMPTS_DIR else str(path.resolve())
    try:
        template = Template(name, text, hashlib.sha256(text.encode()).hexdigest()[:16])
        fields = template.fields
    except ValueError as e:
        raise StrategyError(f"prompt template {path}: malformed placeholder ({e}); write a literal brace "
                            "as {{ or }}") from None
    missing = set(required_fields) - fields
    if missing:
        raise StrategyError(f"prompt template {path} lacks the field(s) {sorted(missing)} that the strategy "
                            f"fills in; it has {sorted(fields)}")
    return template


# ----- parsing what models answer --------------------------------------------------------------
_REFUSAL_RE = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry[,.]|i apologi[sz]e|i can ?not|i can'?t|i'?m (?:not )?(?:able|unable)|"
    r"i am (?:not )?(?:able|unable)|i won'?t|as an ai\b)", re.IGNORECASE)
_FENCE_RE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def is_refusal(text: str) -> bool:
    """Does the answer open with a refusal or an apology (``I'm sorry, but I can't...``)?"""
    return bool(_REFUSAL_RE.match(text.strip()))


def strip_fences(text: str) -> str:
    """The inside of one surrounding Markdown code fence, else the stripped text."""
    t = text.strip()
    m = _FENCE_RE.match(t)
    return m.group(1).strip() if m else t


def strip_label(text: str, labels: tuple[str, ...]) -> str:
    """``Rephrased question: How many...`` -> ``How many...`` (any of ``labels``, case-insensitive),
    and surrounding quotes removed."""
    t = strip_fences(text)
    for label in labels:
        m = re.match(rf"^\s*\**\s*{re.escape(label)}\s*\**\s*:\s*\**\s*", t, re.IGNORECASE)
        if m:
            t = t[m.end():]
            break
    t = t.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t


def reworded(text: str, original: str | None, labels: tuple[str, ...], empty_reason: str) -> tuple[str, str | None]:
    """The reworded text in a model's answer, and a rejection reason for its form (or None).

    Reasons: ``refusal``; ``empty_reason`` when nothing is left after the label; ``unchanged``
    when it equals ``original`` up to case and whitespace.
    """
    from augscale.tasks.base import normalize_ws

    out = strip_label(text, labels)
    if is_refusal(text):
        return out, "refusal"
    if not out:
        return out, empty_reason
    if original is not None and normalize_ws(out).lower() == normalize_ws(original).lower():
        return out, "unchanged"
    return out, None


def labelled_sections(text: str, labels: tuple[str, ...]) -> dict[str, str]:
    """Sections of an answer that writes ``Label: content`` for each of ``labels`` (case-insensitive).

    ``labelled_sections("Question: How many?\\nSQL: SELECT 1", ("Question", "SQL"))`` ->
    ``{"question": "How many?", "sql": "SELECT 1"}``. A label may be bold (``**SQL:**``); a
    section runs to the next label. Absent labels are absent keys.
    """
    t = strip_fences(text)
    pattern = re.compile(r"^\s*\**\s*(" + "|".join(re.escape(lb) for lb in labels) + r")\s*\**\s*:\s*\**",
                         re.IGNORECASE | re.MULTILINE)
    marks = list(pattern.finditer(t))
    out: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(t)
        key = m.group(1).lower()
        if key not in out:
            out[key] = strip_fences(t[m.end():end].strip())
    return out
