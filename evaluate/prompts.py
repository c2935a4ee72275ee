"""Evaluation prompts: the special-token format, or natural language with k examples.

``tokens`` is how our checkpoints were trained (``<START_Q>{input}<END_Q><START_A>``,
stop at ``<END_A>``): zero-shot. ``natural`` is for base models and API models that never
saw the tokens (the case study's baselines): an instruction, then ``k`` solved examples,
then the question::

    Solve the math word problem step by step. ...

    Question: Natalia sold clips to 48 of her friends ...
    Answer: Natalia sold 48/2 = <<48/2=24>>24 clips in May. ... #### 72

    Question: {the item's input}
    Answer:

Each prompt comes with the continuation whose loss measures the model on the reference
(the target as the format expects it) and the strings and tokens that end an answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from augscale.tasks import Task

STYLES = ("tokens", "natural")

INSTRUCTIONS: dict[str, str] = {
    "gsm8k": "Solve the math word problem step by step. End your answer with a final line '#### <number>'.",
    "viggo": ("Convert the sentence about a video game into a meaning representation of the form "
              "function(attribute[value], attribute[value], ...). Functions: inform, request, give_opinion, "
              "confirm, verify_attribute, suggest, request_explanation, recommend, request_attribute. "
              "Reply with the meaning representation only."),
    "sql": "Write one SQLite query that answers the question for the tables given. Reply with the query only.",
}
DEFAULT_INSTRUCTION = "Answer the question. Reply with the answer only."
NATURAL_STOPS = ("\nQuestion:",)


@dataclass
class Prompt:
    """One item's prompt. ``system`` is the instruction alone (chat endpoints send it as the
    system message); ``text`` is what a local model reads (instruction included)."""

    text: str
    user: str
    system: str | None
    continuation: str
    stop_strings: list[str] = field(default_factory=list)
    stop_tokens: list[str] = field(default_factory=list)


def instruction(task: Task) -> str:
    return INSTRUCTIONS.get(task.name, DEFAULT_INSTRUCTION)


def pick_shots(pool: Sequence[dict[str, Any]], k: int, *, seed: int = 0, exclude: set[str] = frozenset()
               ) -> list[dict[str, Any]]:
    """``k`` solved examples from ``pool`` (the train split), the same for every item; deterministic.

    Raises:
        ValueError: the pool has fewer than ``k`` usable records.
    """
    usable = [r for r in pool if r["id"] not in exclude]
    if len(usable) < k:
        raise ValueError(f"--shots {k}: only {len(usable)} records to draw examples from")
    return random.Random(seed).sample(usable, k) if k else []


def _qa(task: Task, record: dict[str, Any], answer: str | None) -> str:
    q = f"Question: {task.input_text(record)}\nAnswer:"
    return q if answer is None else f"{q} {answer}"


def build_prompt(task: Task, record: dict[str, Any], *, style: str = "tokens",
                 shots: Sequence[dict[str, Any]] = ()) -> Prompt:
    """The prompt of one record in the given style (``shots``: solved examples, natural style).

    Raises:
        ValueError: an unknown style, or shots with the token style.
    """
    if style == "tokens":
        if shots:
            raise ValueError("k-shot prompts use the natural style: pass --prompt-style natural (or omit it)")
        text = task.prompt_text(record)
        return Prompt(text=text, user=text, system=None, continuation=record["target"] + task.tokens.end_a,
                      stop_tokens=[task.tokens.end_a])
    if style != "natural":
        raise ValueError(f"prompt style {style!r}: allowed values are {', '.join(STYLES)}")
    system = instruction(task)
    user = "\n\n".join([_qa(task, s, s["target"]) for s in shots] + [_qa(task, record, None)])
    return Prompt(text=f"{system}\n\n{user}", user=user, system=system, continuation=" " + record["target"],
                  stop_strings=list(NATURAL_STOPS))
