"""ViGGO ``substitute``: attribute values swapped in the meaning representation and the sentence together.

An attribute value that the sentence writes verbatim (a name, a developer, a year, platforms,
genres...) is replaced, in the MR and in the sentence, by another value of the same attribute
seen in the seed rows. Multi-valued attributes (``platforms[PlayStation, Xbox]``) swap piece by
piece for a value with as many pieces. Yes/no attributes are left alone (the sentence does not
write them verbatim). A variant is kept only if every new value is in the new sentence and no
old one remains.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from pydantic import Field

from augscale.augment.strategies import Candidate, Strategy, StrategyParams, register_strategy
from augscale.tasks.viggo import MR, MRParseError, parse_mr

# Attributes whose value is a list of pieces; every other attribute's value is one piece
# (``exp_release_date[September 11, 2018]`` has a comma but is one date).
MULTI_VALUED = frozenset({"genres", "platforms", "player_perspective"})
SKIPPED_VALUES = frozenset({"", "yes", "no"})


def pieces(attribute: str, value: str) -> list[str]:
    """The pieces of an attribute value, as the sentence would write them."""
    if attribute in MULTI_VALUED:
        return [p.strip() for p in value.split(",") if p.strip()]
    return [value.strip()]


def _pattern(piece: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(piece) + r"(?!\w)", re.IGNORECASE)


def mentions(sentence: str, piece: str) -> bool:
    """Does the sentence write ``piece`` verbatim (case-insensitive, as a whole word)?"""
    return bool(_pattern(piece).search(sentence))


def attribute_values(mrs: Iterable[str], skip: frozenset[str] = SKIPPED_VALUES) -> dict[str, list[str]]:
    """Attribute -> the distinct values seen, sorted (the vocabulary substitutes draw from).

    ``skip``: values left out, lowercased (by default empty, yes and no, which a sentence
    rarely writes verbatim; pass ``frozenset({""})`` to keep yes/no).
    """
    seen: dict[str, set[str]] = {}
    for text in mrs:
        try:
            mr = parse_mr(text)
        except MRParseError:
            continue
        for attr, value in mr.attributes:
            if value is not None and value.strip().lower() not in skip:
                seen.setdefault(attr, set()).add(value.strip())
    return {a: sorted(v) for a, v in sorted(seen.items())}


def swappable(mr: MR, sentence: str) -> list[tuple[int, str, list[str]]]:
    """(position, attribute, pieces) of the attributes whose every piece the sentence writes."""
    out = []
    for i, (attr, value) in enumerate(mr.attributes):
        if value is None or value.strip().lower() in SKIPPED_VALUES:
            continue
        ps = pieces(attr, value)
        if ps and all(mentions(sentence, p) for p in ps):
            out.append((i, attr, ps))
    return out


def replace_pieces(sentence: str, mapping: dict[str, str]) -> str:
    """Replace each old piece by its new one; longer pieces first, spans never replaced twice.

    A replaced word keeps a capital first letter where the sentence had one (``Action`` at the
    start of a sentence becomes ``Shooter``).
    """
    claimed: list[tuple[int, int, str]] = []
    for old in sorted(mapping, key=len, reverse=True):
        for m in _pattern(old).finditer(sentence):
            if any(m.start() < e and s < m.end() for s, e, _ in claimed):
                continue
            new = mapping[old]
            if m.group()[:1].isupper() and new[:1].islower():
                new = new[:1].upper() + new[1:]
            claimed.append((m.start(), m.end(), new))
    out, last = [], 0
    for s, e, new in sorted(claimed):
        out.append(_article(sentence[last:s], new))
        out.append(new)
        last = e
    out.append(sentence[last:])
    return "".join(out)


_ARTICLE_RE = re.compile(r"(?<!\w)(a|an)(\s+)$", re.IGNORECASE)


def _article(before: str, new: str) -> str:
    """``an average`` -> ``a poor``: the indefinite article before a replaced word agrees with it."""
    m = _ARTICLE_RE.search(before)
    if not m or not new[:1].isalpha():
        return before
    article = "an" if new[:1].lower() in "aeiou" else "a"
    if m.group(1)[:1].isupper():
        article = article.capitalize()
    return before[:m.start()] + article + m.group(2)


class ViggoSubstituteParams(StrategyParams):
    """Params of viggo ``substitute``."""

    variants_per_seed: int = Field(2, ge=1, le=50, description="variants attempted per seed sentence")
    max_tries: int = Field(10, ge=1, le=1000, description="draws of new values per variant before giving up")


@register_strategy
class ViggoSubstitute(Strategy):
    """Swap verbatim attribute values in ViGGO's MR and sentence together (module docstring).

    One output row: ``{"id": "viggo-train-00003~substitute-0", "prompt": "Were there even any
    terrible games in 1998?", "target": "request(release_year[1998], specifier[terrible])",
    "source": "substitute", "parent_id": "viggo-train-00003", ...}``
    """

    name = "substitute"
    task = "viggo"
    Params = ViggoSubstituteParams
    input_columns = ("id", "prompt", "target")

    @classmethod
    def build_resources(cls, task, seeds, **kwargs: Any) -> dict[str, Any]:
        """``{"values": {attribute: [value, ...]}}`` from the seeds' MRs."""
        return {"values": attribute_values(seeds.select("target").collect()["target"].to_list())}

    def generate(self, seeds: list[dict[str, Any]]) -> Iterable[Candidate]:
        variants = int(self.params.get("variants_per_seed", 2))
        tries = int(self.params.get("max_tries", 10))
        vocab: dict[str, list[str]] = self.resources.get("values", {})
        for seed in seeds:
            yield from self._variants(seed, vocab, variants, tries)

    def _variants(self, seed: dict[str, Any], vocab: dict[str, list[str]], variants: int,
                  tries: int) -> Iterable[Candidate]:
        pid, sentence = seed["id"], seed["prompt"]
        try:
            mr = parse_mr(seed["target"])
        except MRParseError:
            for i in range(variants):
                yield Candidate.reject(pid, i, "unparseable_seed")
            return
        slots = swappable(mr, sentence)
        if not slots:
            for i in range(variants):
                yield Candidate.reject(pid, i, "no_verbatim_value")
            return
        rng = self.rng(pid)
        seen = {sentence}
        for i in range(variants):
            reason = "no_alternative_value"
            for _ in range(tries):
                out = self._draw(mr, sentence, slots, vocab, rng)
                if isinstance(out, str):
                    reason = out
                    continue
                new_sentence, new_mr, swapped = out
                if new_sentence in seen:
                    reason = "no_new_variant"
                    continue
                seen.add(new_sentence)
                yield Candidate(pid, i, prompt=new_sentence, target=new_mr, answer=new_mr,
                                evidence={"swapped": swapped})
                break
            else:
                yield Candidate.reject(pid, i, reason)

    def _draw(self, mr: MR, sentence: str, slots, vocab, rng) -> tuple[str, str, dict] | str:
        """One draw of new values for every swappable attribute; the variant or a reason."""
        attrs = list(mr.attributes)
        mapping: dict[str, str] = {}
        swapped: dict[str, list[str]] = {}
        for pos, attr, old in slots:
            old_lower = {p.lower() for p in old}
            options = [v for v in vocab.get(attr, ())
                       if len(pieces(attr, v)) == len(old)
                       and not old_lower & {p.lower() for p in pieces(attr, v)}]
            if not options:
                continue
            new = pieces(attr, rng.choice(options))
            mapping.update(zip(old, new))
            attrs[pos] = (attr, ", ".join(new))
            swapped[attr] = [", ".join(old), ", ".join(new)]
        if not mapping:
            return "no_alternative_value"
        new_sentence = replace_pieces(sentence, mapping)
        if any(not mentions(new_sentence, new) for new in mapping.values()):
            return "new_value_missing"
        if any(mentions(new_sentence, old) for old in mapping):
            return "old_value_remains"
        return new_sentence, MR(mr.function, attrs).render(), swapped
