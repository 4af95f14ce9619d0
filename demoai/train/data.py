"""Dataset rows -> tokenized training examples, with the prompt masked out of the labels.

Three formats: ``prompt_completion`` (two columns), ``chat`` (a column of message lists; the
last message is the assistant's answer and the only part trained on), and ``template`` (a
prompt made from columns with ``{{column}}`` placeholders, and a completion column). With
``chat: true`` (the default) the prompt goes through the base model's own chat template, the
one serving and evaluation use; its digest is recorded with the run. Each example is the
prompt's tokens followed by the answer's and the end-of-turn token; labels are ``-100`` over
the prompt, so the loss counts the answer only. Examples longer than ``max_length`` are cut
(and counted); one whose prompt alone fills ``max_length`` has nothing left to learn from
and is dropped (and counted).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact

__all__ = ["Example", "Encoded", "encode_rows", "render_row", "chat_template", "template_digest",
           "IGNORE"]

IGNORE = -100
"""The label of a token the loss skips (the prompt, the padding)."""

_CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
           "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|im_start|>assistant\\n' }}{% endif %}")


@dataclass
class Example:
    """One tokenized example: input ids, labels (``IGNORE`` over the prompt), whether it
    was cut to ``max_length``, and its full length before the cut."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    length: int

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss counts."""
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass
class Encoded:
    """A dataset encoded: the examples, how many rows were cut or dropped, the longest
    full length, and problems per row (row index -> message)."""

    examples: list[Example]
    truncated: int = 0
    dropped: int = 0
    longest: int = 0
    problems: dict[int, str] = field(default_factory=dict)


def chat_template(tokenizer: Any) -> str:
    """The base model's chat template (ChatML when the tokenizer has none)."""
    tpl = getattr(tokenizer, "chat_template", None)
    if not isinstance(tpl, str):
        tpl = (tpl or {}).get("default") or _CHATML
        tokenizer.chat_template = tpl
    return tpl


def template_digest(tokenizer: Any) -> str:
    """The BLAKE2b digest of the chat template the run uses (pinned in its lineage)."""
    return "blake2b:" + hashlib.blake2b(chat_template(tokenizer).encode(), digest_size=32).hexdigest()


def _fill(template: str, row: dict[str, Any]) -> str:
    from demoai.objects.textspec import PLACEHOLDER
    return PLACEHOLDER.sub(lambda m: str(row[m.group(1)]), template)


def _messages(value: Any, i: int) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value):
        raise InvalidArtifact(f"row {i}: the messages column must hold a list of "
                              "{role, content} mappings", row=i)
    if value[-1]["role"] != "assistant":
        raise InvalidArtifact(f"row {i}: the last message must be the assistant's (the answer "
                              "trained on)", row=i)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def render_row(tokenizer: Any, meta: dict[str, Any], row: dict[str, Any], i: int = 0) -> tuple[str, str]:
    """(prompt text, answer text) of one row: the prompt through the chat template when
    ``chat`` is on; the answer ends with the end-of-turn token."""
    fmt, cols = meta["format"], meta["columns"]
    eos = tokenizer.eos_token or ""
    if fmt == "chat":
        msgs = _messages(row.get(cols["messages"]), i)
        if meta.get("system") and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": meta["system"]}, *msgs]
        prompt = tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        if not full.startswith(prompt):
            raise InvalidArtifact(f"row {i}: the chat template does not render the conversation "
                                  "as the prompt followed by the answer", row=i)
        answer = full[len(prompt):].rstrip("\n")
        return prompt, answer if answer.endswith(eos) else answer + eos
    if fmt == "template":
        missing = [v for v in meta["variables"] if row.get(v) is None]
        if missing:
            raise InvalidArtifact(f"row {i}: column {missing[0]!r} is empty", row=i, column=missing[0])
        user = _fill(meta["template"], row)
    else:
        if row.get(cols["prompt"]) is None:
            raise InvalidArtifact(f"row {i}: column {cols['prompt']!r} is empty", row=i)
        user = str(row[cols["prompt"]])
    if row.get(cols["completion"]) is None:
        raise InvalidArtifact(f"row {i}: column {cols['completion']!r} is empty", row=i)
    answer = str(row[cols["completion"]]) + eos
    if meta.get("chat", True):
        msgs = ([{"role": "system", "content": meta["system"]}] if meta.get("system") else []) + \
            [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), answer
    prefix = f"{meta['system']}\n" if meta.get("system") else ""
    return prefix + user + " ", answer


def encode_rows(tokenizer: Any, meta: dict[str, Any], rows: list[dict[str, Any]], *,
                strict: bool = True) -> Encoded:
    """Tokenize ``rows`` per the config ``meta``. ``strict``: a row that does not render
    raises; otherwise it is reported in ``problems`` (the doctor's mode)."""
    max_len = meta["max_length"]
    out = Encoded([])
    for i, row in enumerate(rows):
        try:
            prompt, answer = render_row(tokenizer, meta, row, i)
        except Exception as e:  # a template error on one row: name the row
            if strict:
                if isinstance(e, InvalidArtifact):
                    raise
                raise InvalidArtifact(f"row {i}: the template does not render: {e}", row=i) from e
            out.problems[i] = str(e)
            continue
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = p_ids + a_ids
        labels = [IGNORE] * len(p_ids) + a_ids
        out.longest = max(out.longest, len(ids))
        cut = len(ids) > max_len
        if len(p_ids) >= max_len:
            out.dropped += 1
            continue
        out.truncated += cut
        out.examples.append(Example(ids[:max_len], labels[:max_len], cut, len(ids)))
    return out
