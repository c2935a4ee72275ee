"""ViGGO strategies that ask an LLM: ``rephrase`` (same MR, sentence reworded) and ``verbalize``
(new MRs recombined from training attributes, put into words by the model).

Both verify coverage, the one thing a reworded sentence can silently lose: every attribute
value must be written in the sentence. A value is checked word for word (case-insensitive, as a
whole word; each piece of a list value such as ``platforms[PlayStation, Xbox]`` on its own).
Yes/no attributes (``has_multiplayer[yes]``) are said in free words and are not checked. For
``rephrase``, the values checked are those the seed sentence itself writes word for word.

Rejection reasons: ``refusal``, ``empty_sentence``, ``unchanged``, ``missing_value``,
``unparseable_seed``, and the request failures of :mod:`.base`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from augscale.augment.llm.base import LLMParams, LLMStrategy, rejects, request_reason
from augscale.augment.llm.prompts import reworded
from augscale.augment.strategies import Candidate, register_strategy
from augscale.augment.substitute_viggo import SKIPPED_VALUES, attribute_values, mentions, pieces
from augscale.tasks.viggo import MR, MRParseError, parse_mr

_LABELS = ("New sentence", "Sentence", "Rephrased sentence")


def checked_values(mr: MR) -> list[tuple[str, str]]:
    """(attribute, piece) pairs a sentence of ``mr`` must write word for word (not yes/no)."""
    return [(attr, p) for attr, value in mr.attributes
            if value is not None and value.strip().lower() not in SKIPPED_VALUES for p in pieces(attr, value)]


def missing_values(sentence: str, required: list[tuple[str, str]]) -> list[str]:
    """``attr[piece]`` for each required piece the sentence does not write."""
    return [f"{attr}[{p}]" for attr, p in required if not mentions(sentence, p)]


def sentence_reason(text: str, original: str | None) -> tuple[str, str | None]:
    """The sentence in a model's answer, and a rejection reason for its form (or None)."""
    return reworded(text, original, _LABELS, "empty_sentence")


class ViggoRephraseParams(LLMParams):
    samples: int | None = Field(None, ge=1, le=64, description="rephrasings per seed (one request, n samples)")


@register_strategy
class ViggoRephrase(LLMStrategy):
    """The seed sentence reworded by the model; the MR is unchanged, and every value the seed
    sentence writes word for word must still be written.

    One output row: ``{"id": "viggo-train-00002~rephrase-0", "prompt": "Dirt: Showdown, a 2012
    driving game rated average, is not on Steam.", "target": "give_opinion(name[Dirt: Showdown],
    release_year[2012], rating[average], genres[driving/racing], available_on_steam[no])",
    "source": "rephrase", ...}``
    """

    name = "rephrase"
    task = "viggo"
    Params = ViggoRephraseParams
    input_columns = ("id", "prompt", "target")
    code_modules = ("augscale.augment.substitute_viggo",)
    templates = {"rephrase": ("viggo_rephrase", frozenset({"sentence", "mr"}))}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, sentence, target = seed["id"], seed["prompt"], seed["target"]
        try:
            mr = parse_mr(target)
        except MRParseError:
            return rejects(pid, range(self.samples), "unparseable_seed")
        required = [(a, p) for a, p in checked_values(mr) if mentions(sentence, p)]
        result = self.ask("rephrase", sentence=sentence, mr=target)
        out = []
        for i in range(self.samples):
            if not result.ok or i >= len(result.texts):
                reason = request_reason(result) if not result.ok else "request_missing_sample"
                out.append(Candidate.reject(pid, i, reason, error=result.error))
                continue
            new, reason = sentence_reason(result.texts[i], sentence)
            missing = missing_values(new, required) if reason is None else []
            ev = self.evidence([result], ("rephrase",), checked=len(required), **({"missing": missing} if missing else {}))
            out.append(Candidate(pid, i, prompt=new, target=target, answer=target,
                                 reason=reason or ("missing_value" if missing else None), evidence=ev))
        return out


class ViggoVerbalizeParams(LLMParams):
    variants: int = Field(1, ge=1, le=16, description="new MRs per seed")


def attribute_vocab(mrs: list[str]) -> dict[str, list[str]]:
    """Attribute -> its distinct values in training (yes/no included), sorted."""
    return attribute_values(mrs, skip=frozenset({""}))


def recombine(mr: MR, vocab: dict[str, list[str]], rng) -> MR:
    """A new MR with ``mr``'s function and attribute names and values drawn from training.

    Each valued attribute gets another value seen for it in training when there is one (a
    yes/no attribute another of yes/no); attributes without a value stay without one.
    """
    attrs = []
    for attr, value in mr.attributes:
        if value is None:
            attrs.append((attr, None))
            continue
        options = [v for v in vocab.get(attr, ()) if v.lower() != value.strip().lower()]
        attrs.append((attr, rng.choice(options) if options else value))
    return MR(mr.function, attrs)


@register_strategy
class ViggoVerbalize(LLMStrategy):
    """New MRs recombined from training attributes per function, put into words by the model.

    A new MR keeps a seed's function and attribute names (so the mix of functions and attribute
    sets follows training) and draws each value from the values that attribute takes in
    training. The model writes the sentence; it is kept if every non-yes/no value is written.

    One output row: ``{"id": "viggo-train-00010~verbalize-0", "prompt": "SpellForce 3 is a 2017
    strategy game for PC that got poor reviews.", "target": "give_opinion(name[SpellForce 3],
    release_year[2017], rating[poor], genres[strategy], platforms[PC])", "source": "verbalize",
    "meta": {"verbalize": {"template_mr": "give_opinion(name[...], ...)", ...}}}``
    """

    name = "verbalize"
    task = "viggo"
    Params = ViggoVerbalizeParams
    input_columns = ("id", "prompt", "target")
    code_modules = ("augscale.augment.substitute_viggo",)
    templates = {"verbalize": ("viggo_verbalize",
                               frozenset({"mr", "function", "example_mr", "example_sentence"}))}

    @classmethod
    def build_resources(cls, task, seeds, **kwargs: Any) -> dict[str, Any]:
        """``{"values": {attribute: [value, ...]}}`` over the seeds' MRs (yes/no included)."""
        return {"values": attribute_vocab(seeds.select("target").collect()["target"].to_list())}

    def one_seed(self, seed: dict[str, Any]) -> list[Candidate]:
        pid, variants = seed["id"], int(self.params.get("variants", 1))
        try:
            mr = parse_mr(seed["target"])
        except MRParseError:
            return rejects(pid, range(variants), "unparseable_seed")
        rng = self.rng(pid)
        out = []
        for j in range(variants):
            new_mr = recombine(mr, self.resources.get("values", {}), rng)
            text_mr = new_mr.render()
            result = self.ask("verbalize", n=1, mr=text_mr, function=new_mr.function, example_mr=seed["target"],
                              example_sentence=seed["prompt"])
            if not result.ok or not result.texts:
                reason = request_reason(result) if not result.ok else "request_missing_sample"
                out.append(Candidate.reject(pid, j, reason, mr=text_mr, error=result.error))
                continue
            sentence, reason = sentence_reason(result.texts[0], None)
            missing = missing_values(sentence, checked_values(new_mr)) if reason is None else []
            ev = self.evidence([result], ("verbalize",), template_mr=seed["target"],
                               **({"missing": missing} if missing else {}))
            out.append(Candidate(pid, j, prompt=sentence, target=text_mr, answer=text_mr,
                                 reason=reason or ("missing_value" if missing else None), evidence=ev))
        return out
