"""JSON-schema constraints: output validation, and a token automaton for constrained decoding.

The automaton covers the schema shapes the agent runtime uses (objects with known
properties, enum/const, string, integer, number, boolean, null, arrays, anyOf and free-form
objects to a bounded depth). Properties come out in schema order with at most one space
around separators, so the language is regular: an NFA compiled from the schema, turned into
a DFA lazily, walked over a trie of token strings to get the tokens allowed in each state.

:func:`schema_gbnf` writes the same language as a llama.cpp grammar (GBNF). In both, a JSON
string admits no raw control character (U+0000..U+001F): a newline or tab inside a string
comes out escaped (``\\n``), so what the model emits always parses with ``json.loads``.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from demoai.errors import ModelError

__all__ = ["parse_and_validate", "schema_errors", "schema_gbnf", "strict_strings", "GBNF_KEYWORDS",
           "SchemaAutomaton", "TokenConstraint", "UnsupportedSchema"]

FREE_DEPTH = 2  # nesting allowed inside schema-less objects/arrays


class UnsupportedSchema(ModelError):
    """The schema uses a feature the token automaton does not cover."""


def parse_and_validate(text: str, schema: dict, *, finish_reason: str = "",
                       result: Any = None) -> Any:
    """Parse ``text`` as JSON valid under ``schema``, or raise ModelError saying why.

    The error carries ``text`` and ``finish_reason`` (``cut`` when the reply stopped at
    ``max_tokens`` before its JSON was complete) and, given the call's ``result`` (a
    ChatResult), its usage too (``prompt_tokens``, ``completion_tokens``, ``timings``,
    ``record``), so that a caller can record the failed reply like any other."""
    usage: dict[str, Any] = {}
    if result is not None:
        usage = {k: getattr(result, k, None) for k in
                 ("prompt_tokens", "completion_tokens", "timings", "record")}
    try:
        obj = json.loads(text)
    except ValueError as e:
        if finish_reason == "length":
            n = usage.get("completion_tokens")
            raise ModelError(
                f"the reply stopped at the max_tokens limit{f' ({n} tokens)' if n else ''} "
                "before its JSON was complete", text=text, finish_reason=finish_reason,
                cut=True, **usage) from None
        raise ModelError(f"the model's output is not JSON: {e}", text=text,
                         finish_reason=finish_reason, cut=False, **usage) from None
    errors = schema_errors(obj, schema)
    if errors:
        raise ModelError(f"the model's output does not match the schema: {errors[0]}",
                         text=text, errors=errors, finish_reason=finish_reason, cut=False, **usage)
    return obj


def schema_errors(obj: Any, schema: dict) -> list[str]:
    """Validation errors of ``obj`` under ``schema`` (jsonschema's when it is installed)."""
    try:
        import jsonschema
    except ImportError:
        return _subset_errors(obj, schema, "$")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in validator.iter_errors(obj)]


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _subset_errors(obj: Any, schema: dict, where: str) -> list[str]:
    if "enum" in schema and obj not in schema["enum"]:
        return [f"{where}: {obj!r} is not one of {schema['enum']}"]
    if "const" in schema and obj != schema["const"]:
        return [f"{where}: {obj!r} is not {schema['const']!r}"]
    if "anyOf" in schema or "oneOf" in schema:
        branches = schema.get("anyOf") or schema.get("oneOf")
        if all(_subset_errors(obj, b, where) for b in branches):
            return [f"{where}: matches no branch"]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(_is_type(obj, t) for t in types)
        if not ok:
            return [f"{where}: {obj!r} is not of type {types}"]
    errs: list[str] = []
    if isinstance(obj, dict):
        errs += [f"{where}: {k!r} is required" for k in schema.get("required", []) if k not in obj]
        for k, sub in schema.get("properties", {}).items():
            if k in obj:
                errs += _subset_errors(obj[k], sub, f"{where}/{k}")
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            errs += _subset_errors(item, schema["items"], f"{where}/{i}")
    return errs


def _is_type(obj: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(obj, int) and not isinstance(obj, bool)
    if t == "number":
        return isinstance(obj, (int, float)) and not isinstance(obj, bool)
    return isinstance(obj, _TYPES[t])


# --- NFA: states are ints; an edge matches one char exactly, or a class of chars ---------
_DIGITS = frozenset("0123456789")
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")
_STRING_CHAR = "string-char"  # any char but '"', '\\' and control characters


class _NFA:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Any, int]]] = []

    def state(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def lit(self, text: str) -> tuple[int, int]:
        start = cur = self.state()
        for ch in text:
            nxt = self.state()
            self.edges[cur].append((ch, nxt))
            cur = nxt
        return start, cur

    def cls(self, chars: Any) -> tuple[int, int]:
        a, b = self.state(), self.state()
        self.edges[a].append((chars, b))
        return a, b

    def seq(self, *frags: tuple[int, int]) -> tuple[int, int]:
        for (_, end), (start, _) in zip(frags, frags[1:]):
            self.eps[end].append(start)
        return frags[0][0], frags[-1][1]

    def alt(self, *frags: tuple[int, int]) -> tuple[int, int]:
        a, b = self.state(), self.state()
        for s, e in frags:
            self.eps[a].append(s)
            self.eps[e].append(b)
        return a, b

    def star(self, frag: tuple[int, int]) -> tuple[int, int]:
        a, b = self.state(), self.state()
        self.eps[a] += [frag[0], b]
        self.eps[frag[1]] += [frag[0], b]
        return a, b

    def opt(self, frag: tuple[int, int]) -> tuple[int, int]:
        return self.alt(frag, self.lit(""))


class SchemaAutomaton:
    """A character DFA (built lazily) accepting compact JSON valid under a schema."""

    def __init__(self, schema: dict) -> None:
        self.nfa = _NFA()
        self.start_nfa, self.final = self._value(schema, FREE_DEPTH)
        self._steps: dict[tuple[frozenset, str], frozenset | None] = {}
        self.start = self._closure([self.start_nfa])

    def _closure(self, states: Sequence[int]) -> frozenset:
        seen, todo = set(states), list(states)
        while todo:
            for t in self.nfa.eps[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)

    def step(self, state: frozenset, ch: str) -> frozenset | None:
        """The state after ``ch``, or None when ``ch`` cannot come next."""
        key = (state, ch)
        if key in self._steps:
            return self._steps[key]
        nxt = [t for s in state for m, t in self.nfa.edges[s] if _matches(m, ch)]
        out = self._closure(nxt) if nxt else None
        self._steps[key] = out
        return out

    def walk(self, state: frozenset | None, text: str) -> frozenset | None:
        """The state after ``text`` (None once it leaves the language)."""
        for ch in text:
            if state is None:
                return None
            state = self.step(state, ch)
        return state

    def accepts(self, state: frozenset) -> bool:
        return self.final in state

    def can_continue(self, state: frozenset) -> bool:
        return any(self.nfa.edges[s] for s in state)

    # --- schema -> NFA fragments ---
    def _value(self, schema: Any, depth: int) -> tuple[int, int]:
        n = self.nfa
        if schema is True or schema == {}:
            return self._free(depth)
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"unsupported schema: {schema!r}")
        if "enum" in schema:
            return n.alt(*(n.lit(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]))
        if "const" in schema:
            return n.lit(json.dumps(schema["const"], ensure_ascii=False))
        if "anyOf" in schema or "oneOf" in schema:
            return n.alt(*(self._value(b, depth) for b in schema.get("anyOf") or schema["oneOf"]))
        types = schema.get("type")
        if types is None:
            if "properties" in schema:
                types = "object"
            else:
                return self._free(depth)
        if isinstance(types, list):
            return n.alt(*(self._value({**schema, "type": t}, depth) for t in types))
        if types == "object":
            if "properties" not in schema:
                return self._free_object(depth)
            return self._object(schema)
        if types == "array":
            items = schema.get("items", {})
            return self._array(lambda: self._value(items, max(depth - 1, 0)))
        builders = {"string": self._string, "integer": self._integer, "number": self._number,
                    "boolean": lambda: n.alt(n.lit("true"), n.lit("false")),
                    "null": lambda: n.lit("null")}
        if types not in builders:
            raise UnsupportedSchema(f"unsupported schema type: {types!r}")
        return builders[types]()

    def _ws(self) -> tuple[int, int]:
        return self.nfa.opt(self.nfa.lit(" "))

    def _string(self) -> tuple[int, int]:
        n = self.nfa
        escape = n.seq(n.lit("\\"), n.alt(n.cls(_ESCAPES), n.seq(
            n.lit("u"), n.cls(_HEX), n.cls(_HEX), n.cls(_HEX), n.cls(_HEX))))
        return n.seq(n.lit('"'), n.star(n.alt(n.cls(_STRING_CHAR), escape)), n.lit('"'))

    def _integer(self) -> tuple[int, int]:
        n = self.nfa
        return n.seq(n.opt(n.lit("-")), n.alt(
            n.lit("0"), n.seq(n.cls(frozenset("123456789")), n.star(n.cls(_DIGITS)))))

    def _number(self) -> tuple[int, int]:
        n = self.nfa
        frac = n.opt(n.seq(n.lit("."), n.cls(_DIGITS), n.star(n.cls(_DIGITS))))
        exp = n.opt(n.seq(n.cls(frozenset("eE")), n.opt(n.cls(frozenset("+-"))),
                          n.cls(_DIGITS), n.star(n.cls(_DIGITS))))
        return n.seq(self._integer(), frac, exp)

    def _object(self, schema: dict) -> tuple[int, int]:
        """Known properties in schema order; optional ones may be left out."""
        n = self.nfa
        props = list(schema["properties"].items())
        required = set(schema.get("required", []))
        start, close = n.lit("{"), n.seq(self._ws(), n.lit("}"))
        # rest[(i, first)]: the state before property i, ``first`` if none came yet
        rest = {(len(props), f): close[0] for f in (True, False)}
        for i in range(len(props) - 1, -1, -1):
            name, sub = props[i]
            for first in (True, False):
                s = n.state()
                lead = n.seq(self._ws(), n.lit(json.dumps(name, ensure_ascii=False)))
                if not first:
                    lead = n.seq(self._ws(), n.lit(","), lead)
                member = n.seq(lead, self._ws(), n.lit(":"), self._ws(),
                               self._value(sub, FREE_DEPTH))
                n.eps[s].append(member[0])
                n.eps[member[1]].append(rest[(i + 1, False)])
                if name not in required:
                    n.eps[s].append(rest[(i + 1, first)])
                rest[(i, first)] = s
        n.eps[start[1]].append(rest[(0, True)])
        return start[0], close[1]

    def _free(self, depth: int) -> tuple[int, int]:
        n = self.nfa
        kinds = [self._string(), self._number(), n.lit("true"), n.lit("false"), n.lit("null")]
        if depth > 0:
            kinds += [self._free_object(depth), self._array(lambda: self._free(depth - 1))]
        return n.alt(*kinds)

    def _free_object(self, depth: int) -> tuple[int, int]:
        n = self.nfa

        def member() -> tuple[int, int]:
            return n.seq(self._string(), self._ws(), n.lit(":"), self._ws(),
                         self._free(max(depth - 1, 0)))
        return self._sequence("{", "}", member)

    def _array(self, item: Any) -> tuple[int, int]:
        return self._sequence("[", "]", item)

    def _sequence(self, open_: str, close: str, item: Any) -> tuple[int, int]:
        n = self.nfa
        more = n.star(n.seq(self._ws(), n.lit(","), self._ws(), item()))
        body = n.opt(n.seq(self._ws(), item(), more))
        return n.seq(n.lit(open_), body, self._ws(), n.lit(close))


def _matches(m: Any, ch: str) -> bool:
    if isinstance(m, str):
        return (ch not in '"\\' and ch >= " ") if m == _STRING_CHAR else m == ch
    return ch in m


class TokenConstraint:
    """The tokens a vocabulary may emit next, per automaton state (cached)."""

    def __init__(self, automaton: SchemaAutomaton, token_strings: Sequence[str | None],
                 eos_ids: Sequence[int]) -> None:
        self.automaton = automaton
        self.eos_ids = list(eos_ids)
        self._trie: dict = {}
        for tid, text in enumerate(token_strings):
            if not text or "\ufffd" in text:
                continue  # special, empty or partial-UTF-8 tokens never carry JSON
            node = self._trie
            for ch in text:
                node = node.setdefault(ch, {})
            node.setdefault(None, []).append(tid)
        self._allowed: dict[frozenset, list[int]] = {}
        self.masks: dict[frozenset, Any] = {}  # a backend's own per-state form (tensors)

    def allowed(self, state: frozenset | None) -> list[int]:
        """Token ids that keep the output a prefix of the language (EOS once complete)."""
        if state is None:
            return list(self.eos_ids)
        if state in self._allowed:
            return self._allowed[state]
        auto, out = self.automaton, []
        if auto.can_continue(state):
            stack = [(self._trie, state)]
            while stack:
                node, st = stack.pop()
                for ch, child in node.items():
                    if ch is None:
                        continue
                    nxt = auto.step(st, ch)
                    if nxt is not None:
                        out.extend(child.get(None, ()))
                        stack.append((child, nxt))
        if auto.accepts(state) or not out:
            out.extend(self.eos_ids)
        self._allowed[state] = out
        return out


# --- GBNF: the same language as a llama.cpp grammar ----------------------------------------
_GBNF_BASE = {
    "ws": '" "?',
    # Any char but '"', '\\' and the control characters U+0000..U+001F, or an escape.
    "char": r'[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] )',
    "string": r'"\"" char* "\""',
    "integer": '"-"? ( "0" | [1-9] [0-9]* )',
    "number": 'integer ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?',
    "boolean": '"true" | "false"',
    "null": '"null"',
}


# Keywords schema_gbnf renders exactly (annotations change nothing); any other keyword
# (maxLength, pattern, minimum, $ref, ...) is refused rather than silently dropped.
GBNF_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "enum",
                           "const", "anyOf", "oneOf", "items", "title", "description",
                           "$schema", "default", "examples"})
_STRING_CLASS_RULE = "char ::= " + _GBNF_BASE["char"]


def schema_gbnf(schema: dict) -> str:
    """A llama.cpp grammar (GBNF, root rule ``root``) for compact JSON valid under
    ``schema``: the language :class:`SchemaAutomaton` accepts (same shapes, properties in
    schema order, at most one space around separators, no raw control characters in
    strings). UnsupportedSchema for a keyword outside :data:`GBNF_KEYWORDS`."""
    return _Gbnf().build(schema)


def strict_strings(gbnf: str) -> str:
    """A GBNF grammar written elsewhere (llama.cpp's own converter) with its JSON string
    character rule ``char`` replaced by one that admits no raw control character."""
    lines = gbnf.splitlines()
    return "\n".join(_STRING_CLASS_RULE if ln.startswith("char ::=") else ln for ln in lines) + "\n"


def _gbnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class _Gbnf:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self.by_body: dict[str, str] = {}

    def build(self, schema: dict) -> str:
        root = self._value(schema, FREE_DEPTH)
        lines = [f"root ::= {root}"]
        lines += [f"{k} ::= {v}" for k, v in _GBNF_BASE.items()]
        lines += [f"{k} ::= {v}" for k, v in self.rules.items()]
        return "\n".join(lines) + "\n"

    def _rule(self, body: str) -> str:
        """A named rule for ``body`` (identical bodies share one)."""
        if body not in self.by_body:
            name = f"r{len(self.rules)}"
            self.rules[name] = body
            self.by_body[body] = name
        return self.by_body[body]

    def _value(self, schema: Any, depth: int) -> str:
        if schema is True or schema == {}:
            return self._free(depth)
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"unsupported schema: {schema!r}")
        extra = sorted(set(schema) - GBNF_KEYWORDS)
        if extra:
            raise UnsupportedSchema(f"schema keyword(s) {', '.join(extra)} not covered by the grammar")
        if schema.get("additionalProperties") not in (None, True, False):
            raise UnsupportedSchema("additionalProperties with a schema is not covered by the grammar")
        if "enum" in schema:
            return self._rule(" | ".join(_gbnf_literal(json.dumps(v, ensure_ascii=False))
                                         for v in schema["enum"]))
        if "const" in schema:
            return _gbnf_literal(json.dumps(schema["const"], ensure_ascii=False))
        if "anyOf" in schema or "oneOf" in schema:
            branches = schema.get("anyOf") or schema["oneOf"]
            return self._rule(" | ".join(self._value(b, depth) for b in branches))
        types = schema.get("type")
        if types is None:
            if "properties" not in schema:
                return self._free(depth)
            types = "object"
        if isinstance(types, list):
            return self._rule(" | ".join(self._value({**schema, "type": t}, depth) for t in types))
        if types == "object":
            return self._object(schema) if "properties" in schema else self._free_object(depth)
        if types == "array":
            return self._sequence("[", "]", self._value(schema.get("items", {}), max(depth - 1, 0)))
        if types not in ("string", "integer", "number", "boolean", "null"):
            raise UnsupportedSchema(f"unsupported schema type: {types!r}")
        return types

    def _object(self, schema: dict) -> str:
        """Known properties in schema order; optional ones may be left out."""
        props = list(schema["properties"].items())
        required = set(schema.get("required", []))
        values = [self._value(sub, FREE_DEPTH) for _, sub in props]
        memo: dict[tuple[int, bool], str] = {}

        def rest(i: int, first: bool) -> str:
            """The members from property ``i`` on (``first``: none came yet), then "}"."""
            if (i, first) not in memo:
                if i == len(props):
                    memo[(i, first)] = self._rule('ws "}"')
                else:
                    name = props[i][0]
                    key = _gbnf_literal(json.dumps(name, ensure_ascii=False))
                    lead = f"ws {key}" if first else f'ws "," ws {key}'
                    body = f'{lead} ws ":" ws {values[i]} {rest(i + 1, False)}'
                    if name not in required:
                        body = f"{body} | {rest(i + 1, first)}"
                    memo[(i, first)] = self._rule(body)
            return memo[(i, first)]
        return self._rule(f'"{{" {rest(0, True)}')

    def _free(self, depth: int) -> str:
        kinds = ["string", "number", "boolean", "null"]
        if depth > 0:
            kinds += [self._free_object(depth), self._sequence("[", "]", self._free(depth - 1))]
        return self._rule(" | ".join(kinds))

    def _free_object(self, depth: int) -> str:
        member = self._rule(f'string ws ":" ws {self._free(max(depth - 1, 0))}')
        return self._sequence("{", "}", member)

    def _sequence(self, open_: str, close: str, item: str) -> str:
        return self._rule(f'"{open_}" ( ws {item} ( ws "," ws {item} )* )? ws "{close}"')
