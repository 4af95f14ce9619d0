"""Cleaning: configurable, composable rules over the text columns of an Arrow table.

A rule is a *fix* (rewrites text: ``unicode``, ``whitespace``, ``control``, ``pii``) or a
*filter* (removes rows: ``empty``, ``length``, ``gopher_repetition``, ``language`` where a
detector is installed). Rules are given as specs
(``"nfkc"``, ``{"name": "length", "unit": "words", "min": 3}``), checked by
:func:`parse_rules` (unknown names and parameters are refused with a suggestion), and applied in
order by :func:`apply_rules`. Every removed row records the first rule that removed it, and every
changed row the rules that changed it with a count (PII redactions per kind), so a later diff can
explain each change. Fixes and length filters run column-wise in Arrow compute (RE2); only rows
a cheap vectorized test flags go through Python (Luhn checks, IPv6 validation, repetition).
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import InvalidArtifact

__all__ = ["CleanResult", "apply_rules", "parse_rules", "text_column", "rule_names", "Rule",
           "rule_from_text",
           "repetition_stats", "luhn_valid", "redact_pii", "GOPHER_THRESHOLDS", "PII_KINDS"]

_REMOVED_SCHEMA = pa.schema([("row", pa.int64()), ("step", pa.int32()), ("rule", pa.string()),
                             ("column", pa.string()), ("detail", pa.string())])
_CHANGED_SCHEMA = pa.schema([("row", pa.int64()), ("step", pa.int32()), ("rule", pa.string()),
                             ("column", pa.string()), ("kind", pa.string()),
                             ("count", pa.int64())])


def _suggest(word: str, options: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(sorted(options))})"


class Rule:
    """A named cleaning rule with validated parameters. Subclasses set ``name``, ``kind``
    (``"fix"`` or ``"filter"``) and ``defaults``, and implement ``fix(arr) -> (new, counts)``
    (counts: kind -> per-row edit counts) or ``check(arr) -> (hit mask, {row: detail})``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "fix"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, columns: Sequence[str] | str | None = None, **params: Any) -> None:
        for k in params:
            if k not in self.defaults:
                raise InvalidArtifact(f"clean: rule {self.name!r} has no parameter {k!r}"
                                      f"{_suggest(k, list(self.defaults) + ['columns'])}",
                                      rule=self.name, parameter=k)
        self.columns = [columns] if isinstance(columns, str) else (list(columns) if columns else [])
        self.params = {**self.defaults, **params}
        self.validate()

    @property
    def label(self) -> str:
        """The name recorded for rows this rule removed or changed."""
        return self.name

    def validate(self) -> None:
        """Check the parameters; raise :class:`InvalidArtifact` on a bad one."""

    def _bad(self, param: str, why: str) -> InvalidArtifact:
        return InvalidArtifact(f"clean: rule {self.name!r}: {param} {why}, not "
                               f"{self.params[param]!r}", rule=self.name, parameter=param)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready spec that :func:`parse_rules` turns back into this rule."""
        out: dict[str, Any] = {"name": self.name}
        for k, v in self.params.items():
            out[k] = v if isinstance(v, (str, int, float, bool, list, type(None))) else repr(v)
        if self.columns:
            out["columns"] = list(self.columns)
        return out

    def fix(self, arr: pa.Array) -> tuple[pa.Array, dict[str | None, np.ndarray]]:
        """A fix: the rewritten texts and, per kind (None if the rule has no kinds), the
        number of edits in each row (0: unchanged)."""
        raise NotImplementedError

    def check(self, arr: pa.Array) -> tuple[np.ndarray, dict[int, str]]:
        """A filter: the mask of rows to remove and a detail line for each of them."""
        raise NotImplementedError


def _changed(old: pa.Array, new: pa.Array) -> np.ndarray:
    ne = pc.fill_null(pc.not_equal(old, new), False)
    return ne.to_numpy(zero_copy_only=False).astype(np.int64)


class UnicodeRule(Rule):
    """Unicode normalization to ``form`` (NFC, NFKC, NFD or NFKD); one edit per changed row."""

    name, kind, defaults = "unicode", "fix", {"form": "NFC"}

    def validate(self) -> None:
        if self.params["form"] not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise self._bad("form", "must be NFC, NFKC, NFD or NFKD")

    def fix(self, arr):
        new = pc.utf8_normalize(arr, self.params["form"])
        return new, {None: _changed(arr, new)}


# Horizontal whitespace (RE2's \s is ASCII only): what str.split() splits on, less newlines.
_HSPACE = (r"[\t\x{0b}\x{0c}\r \x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
           r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]")


class WhitespaceRule(Rule):
    """Whitespace: runs of spaces and tabs (any Unicode space) become one space, lines lose
    their edge spaces, more than two newlines become two, the text is trimmed; with
    ``keep_newlines=False`` every run of whitespace becomes one space."""

    name, kind, defaults = "whitespace", "fix", {"keep_newlines": True}

    def validate(self) -> None:
        if not isinstance(self.params["keep_newlines"], bool):
            raise self._bad("keep_newlines", "must be true or false")

    def fix(self, arr):
        if self.params["keep_newlines"]:
            new = pc.replace_substring_regex(arr, _HSPACE + "+", " ")
            new = pc.replace_substring_regex(new, r" ?\n ?", "\n")
            new = pc.replace_substring_regex(new, r"\n{3,}", "\n\n")
        else:
            new = pc.replace_substring_regex(arr, r"(?:\n|" + _HSPACE + ")+", " ")
        new = pc.utf8_trim_whitespace(new)
        return new, {None: _changed(arr, new)}


class ControlRule(Rule):
    """Removal of control characters (C0 but tab and newline, DEL, C1) and, with
    ``zero_width``, invisible format characters (zero-width spaces and joiners, BOM, soft
    hyphen); one edit per character removed."""

    name, kind, defaults = "control", "fix", {"zero_width": True}

    def validate(self) -> None:
        if not isinstance(self.params["zero_width"], bool):
            raise self._bad("zero_width", "must be true or false")

    def fix(self, arr):
        pat = r"[\x{00}-\x{08}\x{0b}\x{0c}\x{0e}-\x{1f}\x{7f}-\x{9f}"
        pat += r"\x{ad}\x{200b}-\x{200f}\x{2060}\x{feff}]" if self.params["zero_width"] else "]"
        counts = pc.fill_null(pc.count_substring_regex(arr, pat), 0).to_numpy(zero_copy_only=False)
        new = pc.replace_substring_regex(arr, pat, "") if counts.any() else arr
        return new, {None: counts.astype(np.int64)}


class EmptyRule(Rule):
    """Removes null, empty and whitespace-only texts."""

    name, kind, defaults = "empty", "filter", {}

    def check(self, arr):
        hit = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 0), True)
        hit = hit.to_numpy(zero_copy_only=False)
        nulls = arr.is_null().to_numpy(zero_copy_only=False)
        return hit, {int(i): "null" if nulls[i] else "empty" for i in np.flatnonzero(hit)}


class LengthRule(Rule):
    """Removes texts shorter than ``min`` or longer than ``max`` ``unit``\\ s: ``chars``
    (code points), ``words`` (whitespace-separated) or ``tokens`` (of ``tokenizer``, a
    callable text -> tokens, or a name given to :func:`parse_rules` in ``tokenizers``)."""

    name, kind = "length", "filter"
    defaults = {"unit": "chars", "min": None, "max": None, "tokenizer": None}

    def validate(self) -> None:
        p = self.params
        if p["unit"] not in ("chars", "words", "tokens"):
            raise self._bad("unit", "must be chars, words or tokens")
        for k in ("min", "max"):
            v = p[k]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise self._bad(k, "must be a non-negative integer")
        if p["min"] is None and p["max"] is None:
            raise InvalidArtifact("clean: rule 'length' needs min, max or both", rule=self.name)
        if p["min"] is not None and p["max"] is not None and p["min"] > p["max"]:
            raise self._bad("min", f"must not exceed max ({p['max']})")
        if p["unit"] == "tokens" and not callable(p["tokenizer"]):
            raise InvalidArtifact("clean: rule 'length' in tokens needs a tokenizer (a callable, "
                                  "or a name passed with tokenizers=)", rule=self.name,
                                  parameter="tokenizer")

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        tok = self.params["tokenizer"]
        named = getattr(tok, "name_or_path", getattr(tok, "__name__", repr(tok)))
        out["tokenizer"] = getattr(self, "_tokenizer_name", None) or (
            None if tok is None else named)
        return out

    def lengths(self, arr: pa.Array) -> np.ndarray:
        """The length of every text in the rule's unit (null counts as 0)."""
        unit = self.params["unit"]
        if unit == "chars":
            n = pc.utf8_length(arr)
        elif unit == "words":
            n = pc.list_value_length(pc.utf8_split_whitespace(arr))
        else:
            tok = self.params["tokenizer"]
            return np.array([len(tok(t)) if t else 0 for t in arr.to_pylist()], dtype=np.int64)
        return pc.fill_null(n, 0).to_numpy(zero_copy_only=False).astype(np.int64)

    def check(self, arr):
        n = self.lengths(arr)
        lo, hi, unit = self.params["min"], self.params["max"], self.params["unit"]
        short = n < lo if lo is not None else np.zeros(len(n), bool)
        long_ = n > hi if hi is not None else np.zeros(len(n), bool)
        det = {int(i): f"{n[i]} {unit} < min {lo}" for i in np.flatnonzero(short)}
        det.update({int(i): f"{n[i]} {unit} > max {hi}" for i in np.flatnonzero(long_)})
        return short | long_, det


# Rae et al. 2021 (Gopher), Appendix A, Table A1: the repetition removal thresholds.
GOPHER_THRESHOLDS: dict[str, float] = {
    "dup_line_frac": 0.30, "dup_para_frac": 0.30,
    "dup_line_char_frac": 0.20, "dup_para_char_frac": 0.20,
    "top_2gram_char_frac": 0.20, "top_3gram_char_frac": 0.18, "top_4gram_char_frac": 0.16,
    "dup_5gram_char_frac": 0.15, "dup_6gram_char_frac": 0.14, "dup_7gram_char_frac": 0.13,
    "dup_8gram_char_frac": 0.12, "dup_9gram_char_frac": 0.11, "dup_10gram_char_frac": 0.10,
}


def _dup_units(units: list[str]) -> tuple[float, float]:
    seen: set[str] = set()
    dup = dup_chars = 0
    for u in units:
        if u in seen:
            dup += 1
            dup_chars += len(u)
        seen.add(u)
    total = sum(len(u) for u in units)
    return (dup / len(units) if units else 0.0), (dup_chars / total if total else 0.0)


def repetition_stats(text: str) -> dict[str, float]:
    """Gopher's repetition measures of ``text`` (Rae et al. 2021, App. A.1.1, Table A1).

    Lines are the non-blank lines (``\\n``-separated, stripped), paragraphs the non-blank
    blocks between blank lines, words the whitespace-separated tokens.

    - ``dup_{line,para}_frac``: the fraction of lines (paragraphs) equal to an earlier one;
    - ``dup_{line,para}_char_frac``: the characters in those repeated lines (paragraphs) over
      the characters of all lines (paragraphs);
    - ``top_{n}gram_char_frac`` (n = 2..4): the characters of the words covered by the
      occurrences of the most frequent word n-gram (one that occurs at least twice; ties go to
      the larger coverage) over the characters of all words, each word counted once;
    - ``dup_{n}gram_char_frac`` (n = 5..10): the characters of the words covered by every
      occurrence of a word n-gram after its first, each word counted once, over the
      characters of all words.
    """
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out: dict[str, float] = {}
    out["dup_line_frac"], out["dup_line_char_frac"] = _dup_units(lines)
    out["dup_para_frac"], out["dup_para_char_frac"] = _dup_units(paras)
    words = text.split()
    wlen = np.array([len(w) for w in words], dtype=np.int64)
    total = int(wlen.sum())
    for n in range(2, 11):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        covered = np.zeros(len(words), dtype=bool)
        if n <= 4:
            counts = Counter(grams)
            key = f"top_{n}gram_char_frac"
            best = max(counts.values(), default=0)
            if best >= 2 and total:
                fracs = []
                for g in (g for g, c in counts.items() if c == best):
                    covered[:] = False
                    for i, h in enumerate(grams):
                        if h == g:
                            covered[i:i + n] = True
                    fracs.append(int(wlen[covered].sum()) / total)
                out[key] = max(fracs)
            else:
                out[key] = 0.0
        else:
            seen: set[tuple] = set()
            for i, g in enumerate(grams):
                if g in seen:
                    covered[i:i + n] = True
                seen.add(g)
            out[f"dup_{n}gram_char_frac"] = int(wlen[covered].sum()) / total if total else 0.0
    return out


class GopherRepetitionRule(Rule):
    """Removes texts whose :func:`repetition_stats` exceed any threshold; the defaults are
    Gopher's (:data:`GOPHER_THRESHOLDS`), each can be given as a parameter."""

    name, kind, defaults = "gopher_repetition", "filter", dict(GOPHER_THRESHOLDS)

    def validate(self) -> None:
        for k, v in self.params.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v <= 1.0:
                raise self._bad(k, "must be a number in (0, 1]")

    def check(self, arr):
        hit = np.zeros(len(arr), dtype=bool)
        det: dict[int, str] = {}
        for i, t in enumerate(arr.to_pylist()):
            if not t:
                continue
            st = repetition_stats(t)
            for k, limit in self.params.items():
                if st[k] > limit:
                    hit[i] = True
                    det[i] = f"{k} {st[k]:.3f} > {limit}"
                    break
        return hit, det


PII_KINDS = ("email", "phone", "ip", "credit_card", "api_key")
_PLACEHOLDER = {"email": "[EMAIL]", "phone": "[PHONE]", "ip": "[IP]",
                "credit_card": "[CREDIT_CARD]", "api_key": "[API_KEY]"}
_PHONE_PAT = (r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
              r"\d{3,4}[ .-]?\d{3,4}(?!\w)")
_PII_PARTS = {
    "api_key": (r"\b(?:sk-(?:[A-Za-z]+-)?[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}\b"
                r"|gh[pousr]_[A-Za-z0-9]{36}\b|github_pat_[A-Za-z0-9_]{22,}"
                r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}\b)"),
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    "ipv6": (r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
             r"(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:])"),
    "credit_card": r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])",
    "ipv4": (r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
             r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]|\.\d)"),
    "phone": _PHONE_PAT,
}
# Earlier alternatives win at the same position: keys before e-mails, cards before phones.
_PII = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PII_PARTS.items()))
_PHONE = re.compile(_PHONE_PAT)
# A superset of the rows _PII can hit, tested in bulk with RE2 before any Python runs.
_PII_PREFILTER = (r"@|\d{3}|[0-9A-Fa-f]*:[0-9A-Fa-f]*:|sk-|AKIA|ASIA|gh[pousr]_|github_pat_"
                  r"|xox[abprs]-|AIza")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (separators ignored) is valid."""
    ds = [int(c) for c in digits if c.isdigit()]
    if len(ds) < 2:
        return False
    total = 0
    for k, d in enumerate(reversed(ds)):
        if k % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _phone_ok(s: str) -> bool:
    return 9 <= sum(c.isdigit() for c in s) <= 15


def redact_pii(text: str, kinds: Sequence[str] = PII_KINDS) -> tuple[str, Counter]:
    """``text`` with PII replaced by typed placeholders (``[EMAIL]``, ``[PHONE]``, ``[IP]``,
    ``[CREDIT_CARD]`` for Luhn-valid 13-19 digit numbers, ``[API_KEY]`` for ``sk-…``,
    ``AKIA…``, ``ghp_…`` and similar keys) and the count of redactions per kind."""
    counts: Counter = Counter()

    def sub(m: re.Match) -> str:
        kind = m.lastgroup or ""
        s = m.group(0)
        if kind == "ipv6":
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                return s
            kind = "ip"
        elif kind == "ipv4":
            kind = "ip"
        elif kind == "credit_card" and not luhn_valid(s):
            kind = "phone" if _PHONE.fullmatch(s) else ""
        if kind == "phone" and not _phone_ok(s):
            return s
        if kind not in kinds:
            return s
        counts[kind] += 1
        return _PLACEHOLDER[kind]

    return _PII.sub(sub, text), counts


class LanguageRule(Rule):
    """Keeps only texts detected (:mod:`demoai.prep.language`) as one of ``keep``, or removes
    those detected as one of ``drop`` (ISO 639 codes; ``und``: empty or below
    ``min_confidence``). Needs an installed detector: without one the rule is refused."""

    name, kind = "language", "filter"
    defaults = {"keep": None, "drop": None, "min_confidence": 0.0, "detector": None}

    def validate(self) -> None:
        from demoai.prep.language import UNDETERMINED, language_detector
        p = self.params
        if (p["keep"] is None) == (p["drop"] is None):
            raise InvalidArtifact("clean: rule 'language' needs keep (languages to keep) or "
                                  "drop (languages to remove), not both", rule=self.name)
        which = "keep" if p["keep"] is not None else "drop"
        langs = p[which] if isinstance(p[which], list) else [p[which]]
        langs = ["no" if x is False else x for x in langs]    # YAML reads Norwegian as false
        if not isinstance(langs, list) or not langs or not all(isinstance(x, str) for x in langs):
            raise self._bad(which, "must be one or more language codes, like en|fr")
        c = p["min_confidence"]
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0.0 <= c < 1.0:
            raise self._bad("min_confidence", "must be a number in [0, 1)")
        self.detector = language_detector()
        known = set(self.detector.languages) | {UNDETERMINED}
        for x in langs:
            if x not in known:
                raise InvalidArtifact(f"clean: rule 'language': unknown language {x!r}"
                                      f"{_suggest(x, sorted(known))}", rule=self.name,
                                      parameter=which)
        p[which] = list(langs)
        p["detector"] = self.detector.name

    def check(self, arr):
        langs, conf = self.detector.detect(arr.to_pylist(), self.params["min_confidence"])
        keep, drop = self.params["keep"], self.params["drop"]
        hit = np.array([(lang not in keep) if keep is not None else (lang in drop)
                        for lang in langs], dtype=bool)
        why = f"not in keep {keep}" if keep is not None else f"in drop {drop}"
        return hit, {int(i): f"language {langs[i]} ({conf[i]:.2f}) {why}"
                     for i in np.flatnonzero(hit)}


class PiiRule(Rule):
    """PII redaction (:func:`redact_pii`) of the ``kinds`` asked for; one edit per
    redaction, recorded per kind."""

    name, kind, defaults = "pii", "fix", {"kinds": list(PII_KINDS)}

    def validate(self) -> None:
        kinds = self.params["kinds"]
        if isinstance(kinds, str):
            kinds = self.params["kinds"] = [kinds]
        for k in kinds:
            if k not in PII_KINDS:
                raise InvalidArtifact(f"clean: rule 'pii': unknown kind {k!r}"
                                      f"{_suggest(k, PII_KINDS)}", rule=self.name,
                                      parameter="kinds")

    def fix(self, arr):
        maybe = pc.fill_null(pc.match_substring_regex(arr, _PII_PREFILTER), False)
        idx = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
        counts = {k: np.zeros(len(arr), dtype=np.int64) for k in self.params["kinds"]}
        if not len(idx):
            return arr, counts
        values = arr.to_pylist()
        for i in idx:
            new, c = redact_pii(values[i], self.params["kinds"])
            if c:
                values[i] = new
                for k, v in c.items():
                    counts[k][i] = v
        return pa.array(values, type=arr.type), counts


RULES: dict[str, type[Rule]] = {r.name: r for r in (
    UnicodeRule, WhitespaceRule, ControlRule, EmptyRule, LengthRule, GopherRepetitionRule,
    PiiRule, LanguageRule)}
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "nfc": ("unicode", {"form": "NFC"}), "nfkc": ("unicode", {"form": "NFKC"})}


def make_rule(spec: str | dict[str, Any],
              tokenizers: dict[str, Callable[[str], Sequence[Any]]]) -> Rule:
    """One :class:`Rule` from a spec (a name or a dict with ``name``)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidArtifact(f"clean: a rule is a name or a mapping with a name, not {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    if name in _ALIASES:
        name, extra = _ALIASES[name]
        params = {**extra, **params}
    if name not in RULES:
        raise InvalidArtifact(f"clean: unknown rule {spec['name']!r}"
                              f"{_suggest(spec['name'], list(RULES) + list(_ALIASES))}",
                              rule=spec["name"])
    tok_name = None
    if name == "length" and isinstance(params.get("tokenizer"), str):
        tok_name = params["tokenizer"]
        if tok_name not in tokenizers:
            raise InvalidArtifact(f"clean: no tokenizer named {tok_name!r} was given",
                                  rule=name, parameter="tokenizer")
        params["tokenizer"] = tokenizers[tok_name]
    rule = RULES[name](**params)
    if tok_name:
        rule._tokenizer_name = tok_name  # type: ignore[attr-defined]
    return rule


def rule_from_text(text: str) -> dict[str, Any]:
    """A rule spec from ``NAME[:k=v,...]`` (values read as YAML scalars; ``a|b`` is a
    list): ``length:unit=words,min=3`` -> ``{"name": "length", "unit": "words", "min": 3}``."""
    import yaml
    name, _, rest = text.partition(":")
    spec: dict[str, Any] = {"name": name.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq:
            raise InvalidArtifact(f"clean: rule parameter {part!r} in {text!r} is not k=v",
                                  rule=name)
        vals = [yaml.safe_load(x) if x else "" for x in v.split("|")]
        spec[k.strip()] = vals if "|" in v else vals[0]
    return spec


def rule_names() -> list[str]:
    """The names :func:`parse_rules` knows (aliases included)."""
    return sorted([*RULES, *_ALIASES])


def text_column(table: pa.Table, name: str, what: str = "clean") -> pa.Array:
    """Column ``name`` of ``table`` as one string array; a missing or non-text column is an
    :class:`InvalidArtifact` naming it (fields ``column`` and ``reason``)."""
    if name not in table.column_names:
        near = difflib.get_close_matches(name, table.column_names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f" (columns: {table.column_names})"
        raise InvalidArtifact(f"{what}: no column {name!r}{hint}", column=name, reason="missing")
    col = table.column(name)
    t = col.type
    if pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type)
                                      or pa.types.is_large_string(t.value_type)):
        col = col.cast(t.value_type)
    elif pa.types.is_null(t):
        col = col.cast(pa.string())
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InvalidArtifact(f"{what}: column {name!r} is {t}, not text", column=name,
                              reason="not_text")
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def parse_rules(specs: Sequence[str | dict[str, Any] | Rule],
                tokenizers: dict[str, Callable[[str], Sequence[Any]]] | None = None
                ) -> list[Rule]:
    """Rules from specs: a name, a dict with ``name`` and parameters, or a :class:`Rule`.
    A ``length`` rule in tokens names its tokenizer, looked up in ``tokenizers`` (or passes
    the callable itself)."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    return [s if isinstance(s, Rule) else make_rule(s, tokenizers or {}) for s in specs]


@dataclass
class CleanResult:
    """What :func:`apply_rules` did. ``table``: the kept rows, fixed; ``keep``: mask over the
    input rows; ``removed``: (row, step, rule, column, detail) per removed input row, the first
    rule that hit (``step`` indexes ``rules``); ``changes``: (row, step, rule, column, kind,
    count) per rule that changed a row, kept or later removed, in rule order (kind: the PII
    kind, else null); ``rules``: the applied specs; ``summary``: per rule label, rows
    removed, rows changed and edits; ``redactions``: PII redactions per kind."""

    table: pa.Table
    keep: np.ndarray
    removed: pa.Table
    changes: pa.Table
    rules: list[dict[str, Any]]
    summary: dict[str, dict[str, int]] = field(default_factory=dict)
    redactions: dict[str, int] = field(default_factory=dict)

    def why(self, row: int) -> list[str]:
        """Lines saying what happened to input ``row`` (empty if nothing did)."""
        out = []
        ch = self.changes.filter(pc.equal(self.changes.column("row"), row)).to_pylist()
        for c in ch:
            kind = f" {c['kind']}" if c["kind"] else ""
            out.append(f"changed by {c['rule']} in {c['column']}: {c['count']}{kind} edit(s)")
        rm = self.removed.filter(pc.equal(self.removed.column("row"), row)).to_pylist()
        for r in rm:
            out.append(f"removed by {r['rule']} on {r['column']}: {r['detail']}")
        return out


def _columns_for(rule: Rule, columns: list[str]) -> list[str]:
    own = rule.columns
    return list(own) if own else columns


def apply_rules(table: pa.Table, rules: Sequence[str | dict[str, Any] | Rule],
                columns: str | Sequence[str],
                tokenizers: dict[str, Callable[[str], Sequence[Any]]] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> CleanResult:
    """Apply ``rules`` in order to the text ``columns`` of ``table`` (a rule's own
    ``columns`` parameter overrides them). A filter rule sees only the rows still kept; a row
    is removed if the rule hits any of its columns. ``progress(rule, done, total)`` is called
    after each rule."""
    parsed = parse_rules(list(rules), tokenizers)
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols:
        raise InvalidArtifact("clean: name at least one text column")
    used = sorted({c for r in parsed for c in _columns_for(r, cols)})
    current = {c: text_column(table, c) for c in used}
    n = table.num_rows
    alive = np.arange(n)
    removed: list[tuple] = []
    changed: list[tuple] = []
    summary: dict[str, dict[str, int]] = {}
    redactions: dict[str, int] = {}
    for k, rule in enumerate(parsed):
        stat = summary.setdefault(rule.label, {"removed": 0, "changed": 0, "edits": 0})
        if rule.kind == "fix":
            for c in _columns_for(rule, cols):
                new, counts = rule.fix(current[c])
                current[c] = new
                for kind, cnt in counts.items():
                    hit = np.flatnonzero(cnt)
                    stat["changed"] += len(hit)
                    stat["edits"] += int(cnt[hit].sum())
                    if kind is not None:
                        redactions[kind] = redactions.get(kind, 0) + int(cnt[hit].sum())
                    changed.extend(zip(alive[hit].tolist(), [k] * len(hit), [rule.label] * len(hit),
                                       [c] * len(hit), [kind] * len(hit), cnt[hit].tolist()))
        else:
            drop = np.zeros(len(alive), dtype=bool)
            for c in _columns_for(rule, cols):
                hit, details = rule.check(current[c])
                new = hit & ~drop
                idx = np.flatnonzero(new)
                removed.extend((int(alive[i]), k, rule.label, c, details[i]) for i in idx)
                drop |= hit
            stat["removed"] += int(drop.sum())
            if drop.any():
                stay = pa.array(np.flatnonzero(~drop))
                current = {c: a.take(stay) for c, a in current.items()}
                alive = alive[~drop]
        if progress is not None:
            progress(rule.label, k + 1, len(parsed))
    keep = np.zeros(n, dtype=bool)
    keep[alive] = True
    out = table.take(pa.array(alive)) if len(alive) < n else table
    for c, arr in current.items():
        i = out.column_names.index(c)
        out = out.set_column(i, pa.field(c, arr.type, table.schema.field(c).nullable), arr)
    removed.sort()
    changed.sort(key=lambda t: (t[0], t[1], t[3], t[4] or ""))
    return CleanResult(
        table=out, keep=keep,
        removed=pa.Table.from_pylist([dict(zip(_REMOVED_SCHEMA.names, t)) for t in removed],
                                     schema=_REMOVED_SCHEMA),
        changes=pa.Table.from_pylist([dict(zip(_CHANGED_SCHEMA.names, t)) for t in changed],
                                     schema=_CHANGED_SCHEMA),
        rules=[r.spec() for r in parsed], summary=summary, redactions=redactions)
