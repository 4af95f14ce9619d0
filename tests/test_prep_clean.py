"""Cleaning rules (demoai.prep.clean): fixes, filters, Gopher repetition, PII, records."""
from __future__ import annotations

import unicodedata

import pyarrow as pa
import pytest

from demoai.errors import InvalidArtifact
from demoai.prep import (
    GOPHER_THRESHOLDS, apply_rules, luhn_valid, parse_rules, redact_pii, repetition_stats,
    rule_names,
)


def table(texts, **extra):
    return pa.table({"id": list(range(len(texts))), "text": pa.array(texts, pa.string()), **extra})


# -- rule specs and bad input ------------------------------------------------------------

@pytest.mark.parametrize("spec, needle", [
    ("lenght", "did you mean 'length'"),
    ({"name": "whitespac"}, "did you mean 'whitespace'"),
    ({"name": "length", "mni": 3}, "did you mean 'min'"),
    ({"name": "length", "min": -1}, "non-negative"),
    ({"name": "length", "min": 5, "max": 2}, "must not exceed max"),
    ({"name": "length"}, "needs min, max or both"),
    ({"name": "length", "unit": "lines", "min": 1}, "chars, words or tokens"),
    ({"name": "length", "unit": "tokens", "min": 1}, "needs a tokenizer"),
    ({"name": "length", "unit": "tokens", "min": 1, "tokenizer": "gpt"}, "no tokenizer named"),
    ({"name": "unicode", "form": "NFX"}, "NFC, NFKC"),
    ({"name": "gopher_repetition", "dup_line_frac": 0}, "(0, 1]"),
    ({"name": "gopher_repetition", "dup_line_frac": 1.5}, "(0, 1]"),
    ({"name": "pii", "kinds": ["emial"]}, "did you mean 'email'"),
    ({"nom": "x"}, "a name or a mapping"),
])
def test_bad_rule_specs_are_refused_with_a_hint(spec, needle):
    with pytest.raises(InvalidArtifact) as e:
        parse_rules([spec])
    assert needle in str(e.value)


def test_missing_and_non_text_columns_are_named():
    t = table(["a"], n=[1])
    with pytest.raises(InvalidArtifact) as e:
        apply_rules(t, ["nfc"], "txt")
    assert e.value.column == "txt" and e.value.reason == "missing" and "'text'" in str(e.value)
    with pytest.raises(InvalidArtifact) as e:
        apply_rules(t, ["nfc"], "n")
    assert e.value.column == "n" and e.value.reason == "not_text" and "int64" in str(e.value)
    with pytest.raises(InvalidArtifact) as e:       # a rule's own column is checked too
        apply_rules(t, [{"name": "empty", "columns": ["nope"]}], "text")
    assert e.value.column == "nope"


def test_rule_specs_round_trip_and_names():
    rules = parse_rules(["nfkc", {"name": "length", "unit": "words", "min": 2}, "pii"])
    specs = [r.spec() for r in rules]
    assert specs[0] == {"name": "unicode", "form": "NFKC"}
    assert [r.spec() for r in parse_rules(specs)] == specs
    assert {"unicode", "nfc", "nfkc", "whitespace", "control", "empty", "length",
            "gopher_repetition", "pii"} <= set(rule_names())


# -- fixes --------------------------------------------------------------------------------

def test_unicode_normalization_matches_unicodedata():
    texts = ["Cafe\u0301", "ﬁne ①", "Å\u030a", "plain", "x\u00a0y"]
    for form in ("NFC", "NFKC"):
        r = apply_rules(table(texts), [{"name": "unicode", "form": form}], "text")
        want = [unicodedata.normalize(form, s) for s in texts]
        assert r.table.column("text").to_pylist() == want
        changed = sorted(set(r.changes.column("row").to_pylist()))
        assert changed == [i for i, s in enumerate(texts) if want[i] != s]


def test_whitespace_and_control_characters():
    texts = ["  a \t b\u3000c  ", "l1  \n\n\n\n  l2 ", "x\x00y\x1bz\u200b!", "clean text", None]
    r = apply_rules(table(texts), ["control", "whitespace"], "text")
    assert r.table.column("text").to_pylist() == ["a b c", "l1\n\nl2", "xyz!", "clean text", None]
    ch = r.changes.to_pylist()
    ctrl = [c for c in ch if c["rule"] == "control"]
    assert [(c["row"], c["count"]) for c in ctrl] == [(2, 3)]
    assert sorted(c["row"] for c in ch if c["rule"] == "whitespace") == [0, 1]
    flat = apply_rules(table(["a\n\nb"]), [{"name": "whitespace", "keep_newlines": False}], "text")
    assert flat.table.column("text").to_pylist() == ["a b"]


# -- filters --------------------------------------------------------------------------------

def test_empty_and_length_filters_in_chars_words_tokens():
    texts = ["", "   ", None, "one", "two words", "three words here", "x" * 50]
    r = apply_rules(table(texts), ["empty", {"name": "length", "unit": "words", "min": 2},
                                   {"name": "length", "unit": "chars", "max": 12}], "text")
    assert r.table.column("text").to_pylist() == ["two words"]
    assert {x["row"]: (x["rule"], x["detail"]) for x in r.removed.to_pylist()} == {
        0: ("empty", "empty"), 1: ("empty", "empty"), 2: ("empty", "null"),
        3: ("length", "1 words < min 2"), 5: ("length", "16 chars > max 12"),
        6: ("length", "1 words < min 2")}
    calls = []

    def chars_as_tokens(s):
        calls.append(s)
        return list(s.replace(" ", ""))
    r = apply_rules(table(["ab", "abcd", "a b c"]),
                    [{"name": "length", "unit": "tokens", "min": 3, "tokenizer": "c"}], "text",
                    tokenizers={"c": chars_as_tokens})
    assert r.table.column("text").to_pylist() == ["abcd", "a b c"] and len(calls) == 3
    assert r.rules[0]["tokenizer"] == "c"


def test_gopher_thresholds_are_the_papers():
    assert GOPHER_THRESHOLDS["dup_line_frac"] == 0.30
    assert GOPHER_THRESHOLDS["dup_para_frac"] == 0.30
    assert GOPHER_THRESHOLDS["dup_line_char_frac"] == 0.20
    assert GOPHER_THRESHOLDS["dup_para_char_frac"] == 0.20
    assert [GOPHER_THRESHOLDS[f"top_{n}gram_char_frac"] for n in (2, 3, 4)] == [0.20, 0.18, 0.16]
    assert [GOPHER_THRESHOLDS[f"dup_{n}gram_char_frac"] for n in range(5, 11)] == \
        [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]


def test_repetition_stats_hand_computed():
    # words: aa b c d e aa b c d e xyz -> 11 words, 2+4+2+4+3 = 15 word characters
    st = repetition_stats("aa b c d e aa b c d e xyz")
    # each of the 2-grams "aa b", "b c", "c d", "d e" occurs twice; "aa b" covers the most
    # characters: words 0,1,5,6 = 2+1+2+1 = 6 -> 6/15
    assert st["top_2gram_char_frac"] == pytest.approx(6 / 15)
    assert st["top_3gram_char_frac"] == pytest.approx(8 / 15)    # "aa b c": 0-2, 5-7
    assert st["top_4gram_char_frac"] == pytest.approx(10 / 15)   # "aa b c d": 0-3, 5-8
    # the second "aa b c d e" (words 5-9, 6 chars) repeats the first; no 6-gram repeats
    assert st["dup_5gram_char_frac"] == pytest.approx(6 / 15)
    assert st["dup_6gram_char_frac"] == 0.0
    # lines: "x y", "hello", "x y", "x y"  (+ a blank line, ignored); paragraphs: 2
    st = repetition_stats("x y\nhello\n\nx y\nx y")
    assert st["dup_line_frac"] == pytest.approx(2 / 4)
    assert st["dup_line_char_frac"] == pytest.approx(6 / 14)     # 2 x "x y" of 3+5+3+3 chars
    assert st["dup_para_frac"] == 0.0
    # words x y hello x y x y (11 chars); "x y" x3 covers 6 words of 1 char
    assert st["top_2gram_char_frac"] == pytest.approx(6 / 11)
    # overlapping occurrences are counted once: "a a a a" has "a a" at 0, 1, 2
    assert repetition_stats("a a a a")["top_2gram_char_frac"] == 1.0
    # a 2-gram seen once is no repetition (short texts are not flagged for it)
    assert repetition_stats("just three words")["top_2gram_char_frac"] == 0.0


def test_gopher_filter_removes_repetitive_texts_and_says_why():
    texts = ["the same line\nthe same line\nthe same line\nanother one",
             "a perfectly ordinary sentence with no repetition at all in it",
             " ".join(["buy cheap pills now"] * 5)]
    r = apply_rules(table(texts), ["gopher_repetition"], "text")
    assert r.table.column("id").to_pylist() == [1]
    det = {x["row"]: x["detail"] for x in r.removed.to_pylist()}
    assert det[0].startswith("dup_line_frac 0.500 > 0.3")
    assert det[2].startswith("top_2gram_char_frac")
    # lines: 3 of 4 "the same line", 2 repeat -> 0.5; their chars 26 of 50 -> 0.52
    loose = apply_rules(table(texts[:1]), [{"name": "gopher_repetition", "dup_line_frac": 0.6}],
                        "text")
    assert loose.removed.column("detail").to_pylist() == ["dup_line_char_frac 0.520 > 0.2"]
    everything = {k: 1.0 for k in GOPHER_THRESHOLDS}
    assert apply_rules(table(texts), [{"name": "gopher_repetition", **everything}],
                       "text").keep.all()


# -- PII ----------------------------------------------------------------------------------

def test_luhn_against_known_numbers():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    for good in ("4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"):
        assert luhn_valid(good)
    assert not luhn_valid("4111 1111 1111 1112")


@pytest.mark.parametrize("text, want, kinds", [
    ("write to jane.doe+x@mail.example.org today", "write to [EMAIL] today", {"email": 1}),
    ("call +1 (555) 123-4567 or 555.123.4567", "call [PHONE] or [PHONE]", {"phone": 2}),
    ("uk: +44 20 7946 0958.", "uk: [PHONE].", {"phone": 1}),
    ("hosts 10.0.0.255 and 2001:db8::8a2e:370:7334 and ::1", "hosts [IP] and [IP] and [IP]",
     {"ip": 3}),
    ("card 4111 1111 1111 1111, not 4111 1111 1111 1112", "card [CREDIT_CARD], not "
     "4111 1111 1111 1112", {"credit_card": 1}),
    ("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx0123", "OPENAI_API_KEY=[API_KEY]",
     {"api_key": 1}),
    ("aws AKIAIOSFODNN7EXAMPLE gh ghp_" + "A1b2" * 9, "aws [API_KEY] gh [API_KEY]",
     {"api_key": 2}),
    ("on 2023-01-15 at 12:30:45 v1.2.3 costs 12345 units", None, {}),
    ("ratio 3.14159 and 1.2.3.4.5", None, {}),
])
def test_pii_redaction_kinds_and_counts(text, want, kinds):
    out, counts = redact_pii(text)
    assert out == (text if want is None else want)
    assert dict(counts) == kinds


def test_pii_rule_counts_per_kind_and_only_asked_kinds():
    texts = ["mail a@b.co and c@d.io", "no pii here at all", "ip 8.8.8.8 mail e@f.com"]
    r = apply_rules(table(texts), ["pii"], "text")
    assert r.table.column("text").to_pylist() == ["mail [EMAIL] and [EMAIL]", texts[1],
                                                  "ip [IP] mail [EMAIL]"]
    assert {k: v for k, v in r.redactions.items() if v} == {"email": 3, "ip": 1}
    assert sorted((c["row"], c["kind"], c["count"]) for c in r.changes.to_pylist()) == [
        (0, "email", 2), (2, "email", 1), (2, "ip", 1)]
    only = apply_rules(table(texts), [{"name": "pii", "kinds": ["ip"]}], "text")
    assert only.table.column("text").to_pylist()[2] == "ip [IP] mail e@f.com"


# -- the driver and its records -----------------------------------------------------------

def test_records_first_removing_rule_changes_in_order_and_why():
    texts = ["  Mail  x@y.com\x07 ", "", "short", "a fine row of text", None]
    t = table(texts, other=["k0", "k1", "k2", "k3", "k4"])
    r = apply_rules(t, ["control", "whitespace", "empty",
                        {"name": "length", "unit": "words", "min": 2},
                        {"name": "length", "unit": "chars", "min": 1}, "pii"], "text")
    assert r.keep.tolist() == [True, False, False, True, False]
    assert r.table.column_names == ["id", "text", "other"]
    assert r.table.column("other").to_pylist() == ["k0", "k3"]
    assert r.table.column("text").to_pylist() == ["Mail [EMAIL]", "a fine row of text"]
    assert [(x["row"], x["step"], x["rule"]) for x in r.removed.to_pylist()] == [
        (1, 2, "empty"), (2, 3, "length"), (4, 2, "empty")]
    assert [(c["row"], c["rule"]) for c in r.changes.to_pylist()] == [
        (0, "control"), (0, "whitespace"), (0, "pii")]
    assert r.summary["empty"]["removed"] == 2 and r.summary["pii"]["edits"] == 1
    assert r.why(0) == ["changed by control in text: 1 edit(s)",
                        "changed by whitespace in text: 1 edit(s)",
                        "changed by pii in text: 1 email edit(s)"]
    assert r.why(2) == ["removed by length on text: 1 words < min 2"]
    assert r.why(3) == []


def test_several_columns_and_a_rules_own_columns():
    t = pa.table({"prompt": ["hi there", "", "ok now"], "response": ["fine", "yes", " "]})
    r = apply_rules(t, ["empty"], ["prompt", "response"])
    assert r.keep.tolist() == [True, False, False]
    assert [(x["row"], x["column"]) for x in r.removed.to_pylist()] == [(1, "prompt"),
                                                                      (2, "response")]
    r = apply_rules(t, [{"name": "empty", "columns": ["response"]}], ["prompt"])
    assert r.keep.tolist() == [True, True, False]


def test_every_row_removed_gives_an_empty_table_with_the_schema():
    r = apply_rules(table(["", " "]), ["empty"], "text")
    assert r.table.num_rows == 0 and r.table.schema == table(["a"]).schema
    assert r.keep.tolist() == [False, False]
