"""The evaluation metrics against the implementations people trust (rouge-score, sacrebleu, the
SQuAD v1.1 script's definition, lm-eval's acc_norm), plus the registry and the text checks."""
from __future__ import annotations

import math
import random
import sys

import pytest

from demoai.errors import BackendUnavailable, InvalidArtifact
from demoai.eval import metrics as M
from demoai.eval import (
    accuracy, accuracy_norm, bits_per_byte, bleu, contains, exact_match, get_metric,
    json_schema_valid, json_valid, length, metric_names, normalize_answer, perplexity,
    regex_match, register_metric, rouge_l, token_f1, word_perplexity,
)

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
sacrebleu = pytest.importorskip("sacrebleu")


# -- registry ----------------------------------------------------------------------------------

def test_registry_names_and_lookup():
    assert {"exact_match", "f1", "rougeL", "bleu", "acc", "acc_norm", "perplexity",
            "word_perplexity", "bits_per_byte", "regex_match", "contains", "json_valid",
            "json_schema_valid", "length"} <= set(metric_names())
    assert get_metric("rougeL") is rouge_l and get_metric("f1") is token_f1


def test_unknown_metric_suggests_the_closest_name():
    with pytest.raises(InvalidArtifact, match=r"did you mean 'rougeL'") as e:
        get_metric("rougel")
    assert e.value.suggestion == "rougeL"


def test_plugin_registration_and_duplicate_refused():
    @register_metric("test_plugin_len")
    def plug(predictions, references):
        return M.MetricResult("test_plugin_len", tuple(float(len(p)) for p in predictions), 0.0)
    try:
        assert get_metric("test_plugin_len")(["ab"], ["x"]).per_example == (2.0,)
        with pytest.raises(InvalidArtifact, match="already registered"):
            register_metric("test_plugin_len")(lambda p, r: None)
    finally:
        M._REGISTRY.pop("test_plugin_len", None)


# -- SQuAD exact match / F1 (official v1.1 definition, hand-checked) ---------------------------

@pytest.mark.parametrize("pred, ref, em, f1", [
    # "the cat sat" -> [cat, sat]; "a cat sat on" -> [cat, sat, on]; common 2:
    # P = 2/2, R = 2/3, F1 = 2*1*(2/3)/(1+2/3) = 0.8
    ("the cat sat", "a cat sat on", 0.0, 0.8),
    # case and punctuation vanish: "The Cat!" -> "cat"
    ("The Cat!", "cat", 1.0, 1.0),
    # multisets: [cat, cat, dog] & [cat, dog, dog] = {cat:1, dog:1} = 2; P = R = 2/3, F1 = 2/3
    ("cat cat dog", "cat dog dog", 0.0, 2 / 3),
    # articles go as whole words only: both sides normalize to "theater" (its "the" stays)
    ("the theater", "an theater", 1.0, 1.0),
    # "U.S.A." -> "usa" (punctuation removed, not split) vs [u, s, a]: nothing in common
    ("U.S.A.", "u s a", 0.0, 0.0),
    # v1.1: both empty -> EM 1 (both normalize to ""), F1 0 (num_same == 0)
    ("", "", 1.0, 0.0),
    # [paris] vs [paris, france]: P = 1, R = 1/2, F1 = 2*(1/2)/(3/2) = 2/3
    ("Paris", "Paris, France", 0.0, 2 / 3),
])
def test_squad_em_f1_hand_checked(pred, ref, em, f1):
    assert exact_match([pred], [ref]).per_example == (em,)
    assert token_f1([pred], [ref]).per_example[0] == pytest.approx(f1)


def test_squad_max_over_references_and_corpus_mean():
    # vs "Broncos": P = 1/2, R = 1 -> 2/3; vs "Denver Broncos team": P = 1, R = 2/3 -> 0.8
    r = token_f1(["Denver Broncos", "x"], [["Broncos", "Denver Broncos team"], "y"])
    assert r.per_example == pytest.approx((0.8, 0.0)) and r.corpus == pytest.approx(0.4)
    assert exact_match(["denver broncos."], [["x", "The Denver Broncos"]]).corpus == 1.0
    assert normalize_answer("  The  Quick, brown\tfox!! ") == "quick brown fox"


# -- ROUGE-L vs rouge-score ---------------------------------------------------------------------

ROUGE_PAIRS = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "a cat was sitting on a mat"),
    ("The Cat SAT.", "the cat sat"),
    ("Hello, world!!!", "hello world"),
    ("", "something"),
    ("something", ""),
    ("", ""),
    ("!!! ??? ...", "..."),
    ("the the the the", "the"),
    ("the", "the the the the"),
    ("a b c d e f", "f e d c b a"),
    ("a b a b a b", "b a b a"),
    ("running runners ran quickly", "the runner runs quick"),
    ("generously generated generations", "generous generation generates"),
    ("café naïve résumé", "cafe naive resume"),
    ("日本語 テキスト", "日本語 テキスト"),
    ("Zürich is in Switzerland", "zurich is in switzerland"),
    ("it's a dog's life", "its a dogs life"),
    ("3.14159 is pi", "pi is 3 14159"),
    ("state-of-the-art models", "state of the art models"),
    ("New York-based companies hired 1,000 people.", "companies based in new york hired 1000 people"),
    ("police killed the gunman", "the gunman was shot down by police"),
    ("x" * 3, "xxx xxx"),
    ("one two three four five six seven eight", "two four six eight"),
    ("The quick brown fox jumps over the lazy dog",
     "A quick brown dog leaps over the lazy fox"),
    ("e-mail: someone@example.com", "email someone example com"),
    ("connection connections connected connecting", "connect"),
    ("tab\tseparated\nnewline", "tab separated newline"),
    ("ÀÉÎÕÜ abc", "abc"),
    ("studies studying studied", "study"),
]


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_l_matches_rouge_score(use_stemmer):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    preds = [p for p, _ in ROUGE_PAIRS]
    refs = [r for _, r in ROUGE_PAIRS]
    ours = rouge_l(preds, refs, use_stemmer=use_stemmer)
    expected = [scorer.score(r, p)["rougeL"].fmeasure for p, r in ROUGE_PAIRS]
    assert ours.per_example == pytest.approx(expected, abs=1e-12)
    assert ours.corpus == pytest.approx(sum(expected) / len(expected))


def test_rouge_l_stemmer_changes_the_score():
    # guards the comparison above against a stemmer silently doing nothing
    assert rouge_l(["studies running"], ["study run"], use_stemmer=True).corpus == 1.0
    assert rouge_l(["studies running"], ["study run"]).corpus == 0.0


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_l_multi_reference_matches_score_multi(use_stemmer):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    cases = [("the cat sat on the mat", ["a dog", "the cat is on the mat", "cat mat"]),
             ("running fast", ["runs fast", "he was running quickly", ""]),
             ("", ["a", "b"])]
    ours = rouge_l([p for p, _ in cases], [rs for _, rs in cases], use_stemmer=use_stemmer)
    expected = [scorer.score_multi(rs, p)["rougeL"].fmeasure for p, rs in cases]
    assert ours.per_example == pytest.approx(expected, abs=1e-12)


def test_rouge_stemming_without_nltk_is_a_typed_error(monkeypatch):
    monkeypatch.setattr(M, "_stemmer", None)
    monkeypatch.setitem(sys.modules, "nltk.stem", None)
    with pytest.raises(BackendUnavailable, match="nltk"):
        rouge_l(["running"], ["run"], use_stemmer=True)


# -- BLEU vs sacrebleu -------------------------------------------------------------------------

CORPORA = [
    (["The cat is on the mat.", "There is a cat on the mat!"],
     [["The cat sat on the mat.", "A cat is on the mat."]]),
    (["It is a guide to action which ensures that the military always obeys the commands of the party.",
      "he read the book because he was interested in world history"],
     [["It is a guide to action that ensures that the military will forever heed Party commands.",
       "he was interested in world history because he read the book"],
      ["It is the guiding principle which guarantees the military forces always being under the "
       "command of the Party.", "he read the book out of interest in world history"]]),
    # short hypotheses: higher orders have no matches -> exp smoothing; brevity penalty
    (["cat", "the dog", "a b c"], [["the cat sat", "the dog barked loudly", "a b c d e"]]),
    # no match at all, an empty hypothesis, numbers, HTML entities, dashes and commas
    (["", "xyz"], [["hello there", "abc"]]),
    (["Prices rose 3.5% in 2023-24, &quot;sharply&quot; &amp; fast.", "1,000 people — came"],
     [['Prices rose 3.5 % in 2023-24 , "sharply" & fast .', "1,000 people came"]]),
    (["Ünïcödé text, naïve café.", "日本語のテキスト。"], [["Unicode text, naive cafe.", "日本語のテキスト。"]]),
]


def _random_corpus(rng: random.Random, n: int):
    vocab = ["the", "a", "cat", "dog", "sat", "on", "mat", ",", ".", "ran", "3.5", "x-y", "(", ")",
             "Cat", "&amp;", "is", "!", "1,000", "was"]
    sent = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))  # noqa: E731
    return [sent() for _ in range(n)], [[sent() for _ in range(n)] for _ in range(rng.randint(1, 3))]


ALL_CORPORA = CORPORA + [_random_corpus(random.Random(seed), 8) for seed in range(12)]


@pytest.mark.parametrize("hyps, streams", ALL_CORPORA)
@pytest.mark.parametrize("backend", ["auto", "builtin"])
def test_bleu_matches_sacrebleu(hyps, streams, backend):
    per_ex_refs = [list(rs) for rs in zip(*streams)]
    ours = bleu(hyps, per_ex_refs, backend=backend)
    assert ours.details["backend"] == ("sacrebleu" if backend == "auto" else "builtin")
    assert ours.corpus == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    expected = [sacrebleu.sentence_bleu(h, rs).score for h, rs in zip(hyps, per_ex_refs)]
    assert ours.per_example == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("kw", [dict(lowercase=True), dict(smooth_method="none"),
                                dict(tokenize="none"), dict(max_ngram_order=2)])
def test_bleu_builtin_options_match_sacrebleu(kw):
    hyps, streams = CORPORA[1][0] + CORPORA[2][0], [CORPORA[1][1][0] + CORPORA[2][1][0]]
    ours = bleu(hyps, [[r] for r in streams[0]], backend="builtin", **kw)
    ref_kw = {("use_effective_order" if k == "effective_order" else k): v for k, v in kw.items()}
    expected = sacrebleu.BLEU(**ref_kw).corpus_score(hyps, streams).score
    assert ours.corpus == pytest.approx(expected, abs=1e-9)


def test_bleu_variable_reference_counts_agree_between_backends():
    hyps = ["the cat sat on a mat", "a dog barked", "hello world"]
    refs = [["the cat sat on the mat"], ["the dog barked", "a dog was barking", "dogs bark"],
            ["hello , world", "hi world"]]
    a, b = bleu(hyps, refs, backend="sacrebleu"), bleu(hyps, refs, backend="builtin")
    assert a.corpus == pytest.approx(b.corpus, abs=1e-9) and a.corpus > 0
    assert a.per_example == pytest.approx(b.per_example, abs=1e-9)


def test_bleu_falls_back_without_sacrebleu(monkeypatch):
    hyps, streams = CORPORA[0]
    expected = sacrebleu.corpus_bleu(hyps, streams).score
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    r = bleu(hyps, [list(rs) for rs in zip(*streams)])
    assert r.details["backend"] == "builtin" and r.corpus == pytest.approx(expected, abs=1e-9)
    with pytest.raises(BackendUnavailable):
        bleu(hyps, [list(rs) for rs in zip(*streams)], backend="sacrebleu")
    with pytest.raises(BackendUnavailable):
        bleu(hyps, [list(rs) for rs in zip(*streams)], tokenize="intl")


# -- multiple choice ---------------------------------------------------------------------------

def test_acc_and_acc_norm_lm_eval_definition():
    # lm-eval: acc = argmax(lls) == gold; acc_norm = argmax(lls / len(choice)) == gold.
    # "no": -4 / 2 chars = -2.0 per char; "certainly": -9 / 9 chars = -1.0 per char.
    # argmax(lls) = 0 ("no"), argmax(normalized) = 1 ("certainly"); gold = 1.
    lls, choices, gold = [[-4.0, -9.0]], [["no", "certainly"]], [1]
    assert accuracy(lls, gold).per_example == (0.0,)
    assert accuracy_norm(lls, gold, choices).per_example == (1.0,)


def test_acc_norm_chars_versus_bytes_and_ties():
    # "éé" is 2 chars but 4 UTF-8 bytes: chars -> -2.2/2 = -1.1 vs -3/3 = -1.0 -> choice 1;
    # bytes -> -2.2/4 = -0.55 vs -3/3 = -1.0 -> choice 0.
    lls, choices = [[-2.2, -3.0]], [["éé", "abc"]]
    assert accuracy_norm(lls, [1], choices).corpus == 1.0
    assert accuracy_norm(lls, [0], choices, length_unit="bytes").corpus == 1.0
    # ties go to the first choice, like np.argmax
    assert accuracy([[-1.0, -1.0], [-3.0, -1.0]], [0, 0]).per_example == (1.0, 0.0)
    with pytest.raises(InvalidArtifact):
        accuracy_norm([[-1.0]], [0], [["a", "b"]])


# -- perplexities ------------------------------------------------------------------------------

def test_perplexity_pools_nll_over_tokens():
    r = perplexity([2.0, 4.0], [1, 3])
    assert r.per_example == pytest.approx((math.exp(2.0), math.exp(4 / 3)))
    assert r.corpus == pytest.approx(math.exp(6 / 4))  # exp(sum nll / sum tokens), not a mean
    assert word_perplexity([3.0], [2]).corpus == pytest.approx(math.exp(1.5))
    # 8 ln 2 nats over 4 bytes = 8 bits / 4 bytes = 2 bits per byte
    assert bits_per_byte([8 * math.log(2)], [4]).corpus == pytest.approx(2.0)
    with pytest.raises(InvalidArtifact):
        perplexity([1.0], [0])


# -- text checks -------------------------------------------------------------------------------

def test_regex_contains_length():
    assert regex_match(["answer: 42", "no"], pattern=r"\d+").per_example == (1.0, 0.0)
    assert regex_match(["42", "42x"], pattern=r"\d+", full=True).per_example == (1.0, 0.0)
    assert regex_match(["abc", "xyz"], [["^a", "^z"], "b"]).per_example == (1.0, 0.0)
    with pytest.raises(InvalidArtifact):
        regex_match(["a"], pattern="(")
    assert contains(["Paris is big", "Lyon"], ["Paris", "paris"]).per_example == (1.0, 0.0)
    assert contains(["Lyon"], ["lyon"], case_sensitive=False).corpus == 1.0
    assert length(["héllo", "a b  c"]).per_example == (5.0, 6.0)
    assert length(["héllo", "a b  c"], unit="words").per_example == (1.0, 3.0)


def test_json_and_schema_validity(monkeypatch):
    assert json_valid(['{"a": 1}', "[1, 2", "null", "NaN", "[Infinity]", ""]).per_example == (
        1.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    r = json_schema_valid(['{"a": 1}', '{"a": "x"}', '{"b": 1}', "not json"], schema)
    assert r.per_example == (1.0, 0.0, 0.0, 0.0) and r.corpus == 0.25
    with pytest.raises(InvalidArtifact, match="invalid JSON schema"):
        json_schema_valid(["{}"], {"type": "no-such-type"})
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(BackendUnavailable, match="jsonschema"):
        json_schema_valid(["{}"], schema)


def test_mismatched_lengths_are_typed_errors():
    with pytest.raises(InvalidArtifact):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(InvalidArtifact):
        token_f1(["a"], [[]])
