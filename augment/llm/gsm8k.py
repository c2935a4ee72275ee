"""GSM8k strategies that ask an LLM: MetaMath's answer augmentation, rephrasing and backward
questions, and MuggleMath/Orca-Math-style evolution.

Every solution a model writes is checked here before the pipeline's verifier sees it: it must
be in GSM8k form (``<<a*b=c>>`` annotations, a last line ``#### n``), every annotation must
recompute (safe evaluator, :mod:`augscale.tasks.arith`), and its final answer must be the one
known without trusting the model: the gold answer (answer_augment, rephrase), the masked
number (backward), or the majority of k sampled solutions (evolve, which has no gold).

Rejection reasons: ``refusal``, ``truncated``, ``no_final_answer``, ``no_annotations``,
``bad_annotation``, ``wrong_annotation``, ``wrong_answer``, ``duplicate_solution``,
``empty_rephrase``, ``unchanged``, ``no_maskable_number``, ``empty_problem``,
``no_valid_solution``, ``no_agreement``, and the request failures of :mod:`.base`.
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from typing import Any

from pydantic import Field, field_validator

from augscale.augment.llm.base import LLMParams, LLMStrategy, rejects, request_reason
from augscale.augment.llm.prompts import is_refusal, strip_fences, strip_label
from augscale.augment.strategies import Candidate, register_strategy
from augscale.augment.substitute_gsm8k import parse_steps, substitutable
from augscale.tasks.arith import annotations, check_annotations, format_number, parse_number
from augscale.tasks.base import normalize_ws
from augscale.tasks.gsm8k import final_answer, numbers_equal

_SOLVE = frozenset({"question"})
_ANSWER_LABEL_RE = re.compile(r"^\s*\**\s*(answer|solution)\s*\**\s*:\s*", re.IGNORECASE)
_FINAL_LINE_RE = re.compile(r"####[^\n]*")
_DIGITS_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")


def clean_solution(text: str) -> str:
    """A model's answer as a GSM8k target: fences and a leading ``Answer:`` removed, cut after the
    ``#### n`` line, which is rewritten as ``#### <plain number>``."""
    t = _ANSWER_LABEL_RE.sub("", strip_fences(text), count=1).strip()
    m = _FINAL_LINE_RE.search(t)
    if m is None:
        return t
    final = final_answer(t)
    body = t[:m.start()].rstrip()
    return (body + "\n" if body else "") + f"#### {final if final is not None else m.group()[4:].strip()}"


def check_solution(text: str, finish_reason: str = "stop", gold: str | None = None) -> tuple[str, str | None, dict]:
    """Check one generated solution.

    Returns:
        (solution, reason, evidence): the cleaned solution; None or why it is rejected; the
        final answer and the annotation count.
    """
    if is_refusal(text):
        return text.strip(), "refusal", {}
    solution = clean_solution(text)
    final = final_answer(solution)
    if final is None or parse_number(final) is None:
        return solution, "truncated" if finish_reason == "length" else "no_final_answer", {}
    steps = annotations(solution)
    evidence = {"final": final, "steps": len(steps)}
    if not steps:
        return solution, "no_annotations", evidence
    ok, reason, _ = check_annotations(solution)
    if not ok:
        return solution, reason, evidence
    if gold is not None and not numbers_equal(final, gold):
        return solution, "wrong_answer", {**evidence, "gold": gold}
    return solution, None, evidence


class _SolveSeeds(LLMStrategy):
    input_columns = ("id", "prompt", "target", "answer")
    code_modules = ("augscale.augment.substitute_gsm8k", "augscale.tasks.arith")

    def solutions(self, parent_id: str, question: str, result, first_index: int, gold: str, roles: tuple[str, ...],
                  results: list, seen: set[str], **extra: Any) -> list[Candidate]:
        """One candidate per sample of ``result``: kept when correct and new (``seen``: solutions so far)."""
        out = []
        for s in range(self.samples):
            i = first_index + s
            if not result.ok:
                out.append(Candidate.reject(parent_id, i, request_reason(result), error=result.error))
                continue
            if s >= len(result.texts):
                out.append(Candidate.reject(parent_id, i, "request_missing_sample"))
                continue
            solution, reason, ev = check_solution(result.texts[s], result.finish_reasons[s], gold)
            ev = self.evidence(results, roles, **extra, **ev)
            key = normalize_ws(solution)
            if reason is None and key in seen:
                reason = "duplicate_solution"
            if reason is not None:
                out.append(Candidate(parent_id, i, prompt=question, target=solution, reason=reason, evidence=ev))
                continue
            seen.add(key)
            out.append(Candidate(parent_id, i, prompt=question, target=solution, answer=ev["final"], evidence=ev))
        return out


@register_strategy
class GSM8kAnswerAugment(_SolveSeeds):
    """MetaMath AnsAug: new step-by-step solutions of the seed questions, kept when correct.

    ``samples`` solutions per seed question; a solution is kept if its ``#### n`` equals the gold
    answer and every annotation recomputes, and it differs from the seed's and earlier ones.

    One output row: ``{"id": "gsm8k-train-00001~answer_augment-0", "prompt": "Weng earns $12 an
    hour for babysitting...", "target": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\\nFor 50
    minutes she earned 0.2 x 50 = $<<0.2*50=10>>10.\\n#### 10", "answer": "10", "source":
    "answer_augment", "meta": {"answer_augment": {"model": "...", "prompts": {"solve": {"name":
    "gsm8k_solve", "sha256": "..."}}, "usage": {...}, "final": "10", "steps": 2}, ...}}``
    """

    name = "answer_augment"
    task = "gsm8k"
    new_targets = True  # the seed's own question: dedup on question and solution
    templates = {"solve": ("gsm8k_solve", _SOLVE)}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        result = self.ask("solve", question=seed["prompt"])
        seen = {normalize_ws(seed["target"])}
        return self.solutions(seed["id"], seed["prompt"], result, 0, seed["answer"], ("solve",), [result], seen)


class GSM8kRephraseParams(LLMParams):
    variants: int = Field(1, ge=1, le=16, description="rephrased questions per seed")


@register_strategy
class GSM8kRephrase(_SolveSeeds):
    """MetaMath rephrasing: the seed question reworded by the model, then solved by it; a solution
    is kept if its answer is the seed's gold answer (and every annotation recomputes).

    Attempt ``j * samples + s``: sample ``s`` of the solutions of rephrasing ``j``.

    One output row: ``{"id": "gsm8k-train-00001~rephrase-0", "prompt": "Yesterday Weng babysat for
    50 minutes. If her pay is $12 per hour, how much money did she make?", "target": "... #### 10",
    "answer": "10", "source": "rephrase", ...}``
    """

    name = "rephrase"
    task = "gsm8k"
    Params = GSM8kRephraseParams
    templates = {"rephrase": ("gsm8k_rephrase", _SOLVE), "solve": ("gsm8k_solve", _SOLVE)}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, question, variants = seed["id"], seed["prompt"], int(self.params.get("variants", 1))
        first = self.ask("rephrase", n=variants, question=question)
        out: list[Candidate] = []
        seen = {normalize_ws(seed["target"])}
        for j in range(variants):
            idx = range(j * self.samples, (j + 1) * self.samples)
            if not first.ok:
                out += rejects(pid, idx, request_reason(first), error=first.error)
                continue
            if j >= len(first.texts):
                out += rejects(pid, idx, "request_missing_sample")
                continue
            text = first.texts[j]
            new_q = strip_label(text, ("Rephrased question", "Rephrase the above question", "Question"))
            reason = ("refusal" if is_refusal(text) else "empty_rephrase" if not new_q
                      else "unchanged" if normalize_ws(new_q).lower() == normalize_ws(question).lower() else None)
            if reason:
                out += rejects(pid, idx, reason, **self.evidence([first], ("rephrase",), rephrased=new_q))
                continue
            second = self.ask("solve", question=new_q)
            out += self.solutions(pid, new_q, second, idx.start, seed["answer"], ("rephrase", "solve"),
                                  [first, second], seen)
        return out


class GSM8kBackwardParams(LLMParams):
    variants: int = Field(1, ge=1, le=8, description="masked numbers per seed (each a different number)")


def maskable_numbers(question: str, solution: str) -> list:
    """The question's numbers that the solution's annotations use (:func:`substitutable`)."""
    steps = parse_steps(solution)
    if not steps:
        return []
    return substitutable(question, steps)


def backward_question(question: str, number, answer: str) -> str:
    """FOBAR's question: ``number`` masked as ``x``, the original answer given, x asked for."""
    token = _DIGITS_RE.sub("x", question[number.start:number.end], count=1)  # "$12" -> "$x", "25%" -> "x%"
    masked = question[:number.start] + token + question[number.end:]
    return (f"{masked.rstrip()} If we know the answer to the above question is {answer}, "
            "what is the value of unknown variable x?")


@register_strategy
class GSM8kBackward(_SolveSeeds):
    """MetaMath FOBAR: a number of the seed question masked as x, the answer given, x asked for.

    The target's final answer is the masked number, known without trusting the model; the
    model writes the reasoning, kept when its ``#### n`` is that number and every annotation
    recomputes. Attempt ``j * samples + s``: sample ``s`` for masked number ``j``.

    One output row: ``{"id": "gsm8k-train-00001~backward-0", "prompt": "Weng earns $x an hour for
    babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn? If we
    know the answer to the above question is 10, what is the value of unknown variable x?",
    "target": "She earned 10 in 50/60 of an hour, so x = 10/(50/60) = <<10/(50/60)=12>>12.\\n#### 12",
    "answer": "12", "source": "backward", "meta": {"backward": {"masked": "12", ...}}}``
    """

    name = "backward"
    task = "gsm8k"
    Params = GSM8kBackwardParams
    templates = {"solve": ("gsm8k_backward", _SOLVE)}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, variants = seed["id"], int(self.params.get("variants", 1))
        numbers = maskable_numbers(seed["prompt"], seed["target"])
        if not numbers:
            return rejects(pid, range(variants * self.samples), "no_maskable_number")
        chosen = self.rng(pid).sample(numbers, min(variants, len(numbers)))
        out: list[Candidate] = []
        seen: set[str] = set()
        for j in range(variants):
            idx = range(j * self.samples, (j + 1) * self.samples)
            if j >= len(chosen):
                out += rejects(pid, idx, "no_maskable_number")
                continue
            masked = format_number(chosen[j].value)
            question = backward_question(seed["prompt"], chosen[j], seed["answer"])
            result = self.ask("solve", question=question)
            out += self.solutions(pid, question, result, idx.start, masked, ("solve",), [result], seen, masked=masked)
        return out


# Evolution instructions (MuggleMath's change numbers / add a condition / harder; Orca-Math's
# new question on the same story).
EVOLUTIONS: dict[str, str] = {
    "change_numbers": "Keep the story but change the numbers, so that the answer changes.",
    "add_condition": "Add one more condition or step to the story that changes the answer.",
    "harder": "Make the problem harder, so that it needs more steps to solve.",
    "new_question": "Keep the story and its numbers but ask about a different quantity.",
}


class GSM8kEvolveParams(LLMParams):
    samples: int = Field(4, ge=2, le=64, description="solutions sampled per new problem (k)")
    variants: int = Field(1, ge=1, le=16, description="new problems per seed")
    operations: list[str] = Field(list(EVOLUTIONS), min_length=1, description=f"evolutions drawn from: "
                                  f"{', '.join(EVOLUTIONS)}")
    min_agreement: float = Field(0.5, gt=0, le=1, description="share of the k solutions that must give the "
                                 "majority answer (with annotations that recompute)")

    @field_validator("operations")
    @classmethod
    def _known(cls, ops: list[str]) -> list[str]:
        unknown = [o for o in ops if o not in EVOLUTIONS]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; choose from {', '.join(EVOLUTIONS)}")
        return ops


def majority(solutions: list[tuple[str, str | None, dict]], k: int) -> tuple[Fraction | None, int, dict[str, int]]:
    """The majority final answer among the valid solutions, its votes, and every answer's votes.

    A solution votes only if it passed :func:`check_solution` (annotations recompute); the share
    is taken over all ``k`` samples, so failed samples count against agreement.
    """
    votes: Counter = Counter()
    for _, reason, ev in solutions:
        if reason is None:
            votes[parse_number(ev["final"])] += 1
    if not votes:
        return None, 0, {}
    top = max(votes.items(), key=lambda kv: (kv[1], -abs(kv[0]), kv[0]))  # ties: deterministic
    return top[0], top[1], {format_number(a): c for a, c in votes.most_common()}


@register_strategy
class GSM8kEvolve(_SolveSeeds):
    """New problems evolved from the seeds (MuggleMath, Orca-Math), answered by majority vote.

    Per new problem, ``samples`` (k) solutions are drawn; it is kept only if at least
    ``min_agreement`` of the k give the same answer with annotations that recompute. The
    majority answer is the target's answer; the target is the first such solution.

    One output row: ``{"id": "gsm8k-train-00001~evolve-0", "prompt": "Weng earns $15 an hour...
    and gets a $5 bonus...", "target": "... #### 17.5", "answer": "17.5", "source": "evolve",
    "meta": {"evolve": {"operation": "add_condition", "votes": {"17.5": 3, "20": 1}, "k": 4,
    "agreement": 0.75, ...}}}``
    """

    name = "evolve"
    task = "gsm8k"
    Params = GSM8kEvolveParams
    templates = {"evolve": ("gsm8k_evolve", frozenset({"question", "instruction"})), "solve": ("gsm8k_solve", _SOLVE)}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, question = seed["id"], seed["prompt"]
        variants = int(self.params.get("variants", 1))
        ops = list(self.params.get("operations") or EVOLUTIONS)
        need = float(self.params.get("min_agreement", 0.5))
        rng = self.rng(pid)
        out: list[Candidate] = []
        for j in range(variants):
            op = rng.choice(ops)
            first = self.ask("evolve", n=1, question=question, instruction=EVOLUTIONS[op])
            if not first.ok or not first.texts:
                out.append(Candidate.reject(pid, j, request_reason(first) if not first.ok else "request_missing_sample",
                                            operation=op, error=first.error))
                continue
            text = first.texts[0]
            new_q = strip_label(text, ("New problem", "Problem", "Question"))
            reason = ("refusal" if is_refusal(text) else "empty_problem" if not new_q
                      else "unchanged" if normalize_ws(new_q).lower() == normalize_ws(question).lower() else None)
            if reason:
                out.append(Candidate(pid, j, prompt=new_q, reason=reason,
                                     evidence=self.evidence([first], ("evolve",), operation=op)))
                continue
            second = self.ask("solve", question=new_q)
            if not second.ok:
                out.append(Candidate(pid, j, prompt=new_q, reason=request_reason(second),
                                     evidence=self.evidence([first, second], ("evolve", "solve"), operation=op,
                                                            error=second.error)))
                continue
            checked = [check_solution(t, f) for t, f in zip(second.texts, second.finish_reasons)]
            answer, count, votes = majority(checked, self.samples)
            share = count / self.samples
            ev = self.evidence([first, second], ("evolve", "solve"), operation=op, votes=votes, k=self.samples,
                               agreement=round(share, 4),
                               rejected_solutions=dict(Counter(r for _, r, _ in checked if r)))
            if answer is None:
                out.append(Candidate(pid, j, prompt=new_q, reason="no_valid_solution", evidence=ev))
            elif share < need:
                out.append(Candidate(pid, j, prompt=new_q, reason="no_agreement", evidence=ev))
            else:
                solution = next(s for s, r, e in checked if r is None and parse_number(e["final"]) == answer)
                out.append(Candidate(pid, j, prompt=new_q, target=solution, answer=format_number(answer), evidence=ev))
        return out
