"""Arena battles: every pair of models on every prompt, in both orders, judged by a model or a
person. No model is loaded here: the caller passes callables.

- ``generate(model, prompt) -> answer``: each (model, prompt) answer is asked for once per run
  and reused by every battle that needs it.
- ``judge(prompt, answer_a, answer_b) -> text``: a judge model's raw answer, which must end in a
  verdict as :data:`JUDGE_TEMPLATE` asks (see :func:`parse_verdict`); :func:`make_judge` turns a
  plain ``complete(text) -> text`` into such a judge with the template.
- ``human(prompt, answer_a, answer_b) -> "a" | "b" | "tie"``: a person's vote.

Each pair meets on each prompt twice, ``(A=x, B=y)`` and ``(A=y, B=x)``, so a judge's
preference for a position cancels out. The schedule is shuffled with ``seed`` (reproducible).
An off-format verdict, or a per-item model failure, becomes an *errored* battle: ``winner`` is
None, ``error`` says why and ``raw`` keeps the judge's text; it is never scored as a tie.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Callable, Literal, Sequence

import numpy as np

from demoai.errors import BackendUnavailable, InvalidArtifact, ModelError
from demoai.objects.base import digest_bytes

__all__ = [
    "Battle", "run_battles", "parse_verdict", "parse_vote", "render_judge_prompt", "make_judge",
    "judge_agreement", "JUDGE_TEMPLATE", "JUDGE_TEMPLATE_DIGEST", "template_digest",
]

Winner = Literal["a", "b", "tie"]

JUDGE_TEMPLATE = """\
Please act as an impartial judge. Two AI assistants answered the user question below. Decide \
which answer is better: consider how helpful, relevant, correct, deep and detailed each is, \
and how well it follows the user's request. The order in which the answers are shown must not \
influence you, nor their length, nor the assistants' names. Explain your comparison briefly, \
then give your verdict alone on the last line, in exactly this format: "[[A]]" if assistant A \
is better, "[[B]]" if assistant B is better, "[[C]]" for a tie.

[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]
"""

_FIELDS = re.compile(r"\{(question|answer_a|answer_b)\}")
_VERDICT = re.compile(r"\[\[([ABC])\]\]")
_VERDICTS = {"A": "a", "B": "b", "C": "tie"}
_VOTES = {"a": "a", "b": "b", "tie": "tie", "c": "tie"}


def template_digest(template: str) -> str:
    """``blake3:<hex>`` of a judge template's UTF-8 bytes."""
    return digest_bytes(template.encode("utf-8"))


JUDGE_TEMPLATE_DIGEST = template_digest(JUDGE_TEMPLATE)


def render_judge_prompt(question: str, answer_a: str, answer_b: str, *,
                        template: str = JUDGE_TEMPLATE) -> str:
    """The template with ``{question}``, ``{answer_a}``, ``{answer_b}`` filled in one pass (braces
    inside the texts are left alone)."""
    vals = {"question": question, "answer_a": answer_a, "answer_b": answer_b}
    return _FIELDS.sub(lambda m: vals[m.group(1)], template)


def parse_verdict(text: str) -> Winner:
    """The verdict of a judge's answer: ``[[A]]`` -> ``"a"``, ``[[B]]`` -> ``"b"``, ``[[C]]`` ->
    ``"tie"``. Strict: the last non-empty line must hold a verdict marker, and no other
    marker may appear anywhere in the text (repeats of the same one are fine). Anything else
    raises InvalidArtifact (the judge answered off-format)."""
    if not isinstance(text, str):
        raise InvalidArtifact(f"judge answer is {type(text).__name__}, not text")
    found = _VERDICT.findall(text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not found:
        raise InvalidArtifact("judge answer has no verdict ([[A]], [[B]] or [[C]])")
    if len(set(found)) > 1:
        raise InvalidArtifact(f"judge answer gives conflicting verdicts: "
                              f"{', '.join(f'[[{v}]]' for v in sorted(set(found)))}")
    if not _VERDICT.search(lines[-1]):
        raise InvalidArtifact("judge answer does not end with its verdict line")
    return _VERDICTS[found[0]]  # type: ignore[return-value]


def parse_vote(text: str) -> Winner:
    """A person's vote: ``a``, ``b``, ``tie`` (or ``c``), any case, surrounding blanks ignored;
    anything else raises InvalidArtifact."""
    v = _VOTES.get(text.strip().lower()) if isinstance(text, str) else None
    if v is None:
        raise InvalidArtifact(f"vote must be 'a', 'b' or 'tie', got {text!r}")
    return v  # type: ignore[return-value]


def make_judge(complete: Callable[[str], str], *, template: str = JUDGE_TEMPLATE
               ) -> Callable[[str, str, str], str]:
    """A ``judge(prompt, answer_a, answer_b)`` that renders ``template`` and returns
    ``complete(rendered)``; pass the same ``template`` to :func:`run_battles`."""
    def judge(prompt: str, answer_a: str, answer_b: str) -> str:
        return complete(render_judge_prompt(prompt, answer_a, answer_b, template=template))
    return judge


@dataclass(frozen=True)
class Battle:
    """One battle: ``model_a`` answered in position A, ``model_b`` in position B.

    ``winner`` is relative to the positions (``"a"``, ``"b"``, ``"tie"``), None when errored;
    ``judge`` is ``"judge"`` or ``"human"``; ``raw`` the judge's text or the person's input;
    ``template_digest`` the judge template's digest (None for a person); ``swapped`` marks the
    second order of the pair (the later model of ``models`` in position A)."""

    prompt_index: int
    prompt: str
    model_a: str
    model_b: str
    answer_a: str | None
    answer_b: str | None
    winner: Winner | None
    judge: str
    raw: str | None = None
    error: str | None = None
    template_digest: str | None = None
    swapped: bool = False

    @property
    def id(self) -> str:
        """A stable id: ``prompt_index:model_a:model_b``."""
        return f"{self.prompt_index}:{self.model_a}:{self.model_b}"

    @property
    def winner_model(self) -> str | None:
        """The winning model's name; None for a tie or an errored battle."""
        return {"a": self.model_a, "b": self.model_b}.get(self.winner or "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (plus ``id``)."""
        return {"id": self.id, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Battle":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(**{k: v for k, v in d.items() if k != "id"})
        except TypeError as e:
            raise InvalidArtifact(f"not a battle record: {e}") from None


def _check(models: Sequence[str], prompts: Sequence[str], judge: Any, human: Any) -> None:
    if len(models) < 2:
        raise InvalidArtifact("an arena needs at least two models", models=list(models))
    if any(not isinstance(m, str) or not m for m in models):
        raise InvalidArtifact("model names must be non-empty strings")
    if len(set(models)) != len(models):
        raise InvalidArtifact("a model is listed twice", models=list(models))
    if not prompts or any(not isinstance(p, str) for p in prompts):
        raise InvalidArtifact("an arena needs a non-empty list of prompt texts")
    if (judge is None) == (human is None):
        raise InvalidArtifact("give exactly one of judge (a judge model) or human (votes)")
    for name, fn in (("judge", judge), ("human", human)):
        if fn is not None and not callable(fn):
            raise InvalidArtifact(f"{name} must be callable")


def run_battles(models: Sequence[str], prompts: Sequence[str],
                generate: Callable[[str, str], str],
                judge: Callable[[str, str, str], str] | None = None,
                human: Callable[[str, str, str], str] | None = None, *, seed: int = 0,
                judge_template: str = JUDGE_TEMPLATE,
                on_progress: Callable[[int, int], None] | None = None) -> list[Battle]:
    """Every pair of ``models`` on every prompt in both orders, judged by ``judge`` or
    ``human`` (exactly one), in a schedule shuffled by ``seed``; the battles in the order
    they were judged. ``judge_template`` is the template ``judge`` uses (its digest goes in
    each record). ``on_progress(done, total)`` follows the battles. A ModelError from
    ``generate`` or ``judge`` (other than BackendUnavailable, which propagates) and an
    off-format verdict or vote make that battle errored."""
    _check(models, prompts, judge, human)
    schedule = [s for p in range(len(prompts)) for x, y in combinations(models, 2)
                for s in ((p, x, y, False), (p, y, x, True))]
    order = np.random.default_rng(seed).permutation(len(schedule))
    digest = template_digest(judge_template) if judge is not None else None
    kind = "judge" if judge is not None else "human"
    answers: dict[tuple[str, int], tuple[str | None, str | None]] = {}

    def answer(model: str, p: int) -> tuple[str | None, str | None]:
        key = (model, p)
        if key not in answers:
            try:
                out = generate(model, prompts[p])
                answers[key] = (out, None) if isinstance(out, str) else \
                    (None, f"generate returned {type(out).__name__}, not text")
            except BackendUnavailable:
                raise
            except ModelError as e:
                answers[key] = (None, f"{type(e).__name__}: {e}")
        return answers[key]

    out: list[Battle] = []
    total = len(schedule)
    for done, k in enumerate(order, 1):
        p, ma, mb, swapped = schedule[int(k)]
        (aa, ea), (ab, eb) = answer(ma, p), answer(mb, p)
        winner: Winner | None = None
        raw: str | None = None
        error = None
        if ea or eb:
            error = "; ".join(f"answer of {m} failed: {e}" for m, e in ((ma, ea), (mb, eb)) if e)
        else:
            try:
                raw = (judge or human)(prompts[p], aa, ab)  # type: ignore[misc]
                winner = parse_verdict(raw) if judge is not None else parse_vote(raw)
            except BackendUnavailable:
                raise
            except ModelError as e:
                error = f"{kind} failed: {type(e).__name__}: {e}"
            except InvalidArtifact as e:
                error = f"off-format {kind} answer: {e}"
            if raw is not None and not isinstance(raw, str):
                raw, error, winner = repr(raw), f"{kind} returned a non-text answer", None
        out.append(Battle(prompt_index=p, prompt=prompts[p], model_a=ma, model_b=mb,
                          answer_a=aa, answer_b=ab, winner=winner, judge=kind, raw=raw,
                          error=error, template_digest=digest, swapped=swapped))
        if on_progress is not None:
            on_progress(done, total)
    return out


def judge_agreement(battles: Sequence[Battle]) -> dict[str, Any]:
    """How the verdicts behave: ``errored`` battles, ``decided`` (not tie, not errored),
    ``position_a_share`` (share of decided battles won by position A; 0.5 is unbiased), and
    over (prompt, pair) that have both orders judged, ``pairs`` and ``consistent`` (both
    orders name the same winner, or both tie)."""
    ok = [b for b in battles if b.error is None and b.winner is not None]
    decided = [b for b in ok if b.winner != "tie"]
    by: dict[tuple[int, frozenset[str]], list[Battle]] = {}
    for b in ok:
        by.setdefault((b.prompt_index, frozenset((b.model_a, b.model_b))), []).append(b)
    both = [v for v in by.values() if len(v) == 2 and v[0].model_a != v[1].model_a]
    consistent = sum(1 for x, y in both if x.winner_model == y.winner_model)
    return {"battles": len(battles), "errored": len(battles) - len(ok), "decided": len(decided),
            "position_a_share": (sum(b.winner == "a" for b in decided) / len(decided)
                                 if decided else None),
            "pairs": len(both), "consistent": consistent}
