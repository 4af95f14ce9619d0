"""``train doctor``: check a training config before training, as a table of checks.

The config parses; the base model, dataset and columns resolve; the base loads and its
tokenizer has an end-of-sequence token (and a padding token, else the end-of-sequence one
pads); the template renders every row; the longest example fits ``max_length`` (how many
would be cut, how many dropped); the labels mask the prompt (every example trains on its
answer only, and each answer ends with the end-of-sequence token); the validation split.
A check that cannot run because an earlier one failed is marked ``skipped``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demoai.errors import DemoAIError
from demoai.store.git.repo import Repository
from demoai.train.config import TrainPlan, plan_training
from demoai.train.data import IGNORE, Encoded, encode_rows, template_digest
from demoai.train.lora import load_base

__all__ = ["Check", "DoctorReport", "doctor"]


@dataclass
class Check:
    """One check: its name, ``ok`` / ``warn`` / ``fail`` / ``skipped``, and what was found."""

    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class DoctorReport:
    """Every check of a config; ``ok`` when none failed."""

    config: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no check failed."""
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"config": self.config, "ok": self.ok, "checks": [c.to_dict() for c in self.checks],
                "facts": self.facts}


_LATER = ("base loads", "tokenizer", "template renders every row", "fits max_length",
          "labels mask the prompt")


def _skip(rep: DoctorReport, names: tuple[str, ...]) -> DoctorReport:
    for n in names:
        rep.checks.append(Check(n, "skipped", "an earlier check failed"))
    return rep


def _mask_check(enc: Encoded, eos_id: int | None) -> Check:
    bad_prompt = bad_eos = empty = 0
    for ex in enc.examples:
        first = next((i for i, x in enumerate(ex.labels) if x != IGNORE), None)
        if first is None:
            empty += 1
            continue
        if first == 0 or any(x == IGNORE for x in ex.labels[first:]):
            bad_prompt += 1
        if not ex.truncated and eos_id is not None and ex.labels[-1] != eos_id:
            bad_eos += 1
    n = len(enc.examples)
    if bad_prompt or empty:
        return Check("labels mask the prompt", "fail",
                     f"{bad_prompt} of {n} examples train on prompt tokens, {empty} on nothing")
    if bad_eos:
        return Check("labels mask the prompt", "warn",
                     f"{bad_eos} of {n} answers do not end with the end-of-sequence token")
    tokens = sum(ex.trained_tokens for ex in enc.examples)
    return Check("labels mask the prompt", "ok",
                 f"all {n} examples train on their answer only ({tokens} answer tokens, "
                 "each ending with the end-of-sequence token)")


def doctor(repo: Repository, config_path: str) -> DoctorReport:
    """Run every check of the config at ``config_path``; never raises for a bad config
    (the failure is a check), only for a repository that cannot be read."""
    rep = DoctorReport(config_path)
    try:
        plan: TrainPlan = plan_training(repo, config_path)
    except DemoAIError as e:
        rep.checks.append(Check("config, base, dataset and columns", "fail", f"{e.code}: {e.message}"))
        return _skip(rep, _LATER)
    meta = plan.meta
    rep.checks.append(Check("config, base, dataset and columns", "ok",
                            f"base {plan.base.ref}, dataset {meta['dataset']} ({len(plan.train_rows)} "
                            f"train + {len(plan.val_rows)} validation rows), format {meta['format']}"))
    try:
        model, tok = load_base(plan.base.path, plan.base.gguf_file, meta["threads"])
    except DemoAIError as e:
        rep.checks.append(Check("base loads", "fail", f"{e.code}: {e.message}"))
        return _skip(rep, _LATER[1:])
    params = sum(p.numel() for p in model.parameters())
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in meta["lora"]["target_modules"] if t not in names]
    if missing:
        rep.checks.append(Check("base loads", "fail", f"{type(model).__name__}, {params:,} "
                                f"parameters, but it has no module {missing[0]!r} to adapt "
                                "(lora.target_modules)"))
    else:
        rep.checks.append(Check("base loads", "ok", f"{type(model).__name__}, {params:,} "
                                f"parameters, targets {', '.join(meta['lora']['target_modules'])}"))
    del model
    if tok.eos_token is None:
        rep.checks.append(Check("tokenizer", "fail", "no end-of-sequence token: answers could not stop"))
    elif tok.pad_token is None:
        rep.checks.append(Check("tokenizer", "warn", f"no padding token; {tok.eos_token!r} pads"))
    else:
        rep.checks.append(Check("tokenizer", "ok", f"eos {tok.eos_token!r}, pad {tok.pad_token!r}"))
    rep.facts["chat_template"] = template_digest(tok)
    rows = plan.train_rows + plan.val_rows
    enc = encode_rows(tok, meta, rows, strict=False)
    if enc.problems:
        first = next(iter(enc.problems.items()))
        rep.checks.append(Check("template renders every row", "fail",
                                f"{len(enc.problems)} of {len(rows)} rows do not render (row {first[0]}: "
                                f"{first[1]})"))
    else:
        rep.checks.append(Check("template renders every row", "ok", f"all {len(rows)} rows render"))
    max_len = meta["max_length"]
    rep.facts.update(longest=enc.longest, max_length=max_len, truncated=enc.truncated,
                     dropped=enc.dropped, examples=len(enc.examples))
    if enc.dropped:
        status = "fail" if not enc.examples else "warn"
        rep.checks.append(Check("fits max_length", status,
                                f"longest {enc.longest} tokens > {max_len}: {enc.truncated} cut, "
                                f"{enc.dropped} dropped (the prompt alone fills max_length)"))
    elif enc.truncated:
        rep.checks.append(Check("fits max_length", "warn", f"longest {enc.longest} tokens > {max_len}: "
                                f"{enc.truncated} of {len(rows)} examples would be cut"))
    else:
        rep.checks.append(Check("fits max_length", "ok", f"longest {enc.longest} tokens <= {max_len}"))
    rep.checks.append(_mask_check(enc, tok.eos_token_id))
    return rep
