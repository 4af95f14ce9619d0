"""Metrics of the evaluation workflow: plain functions over predictions and references.

Each metric returns a :class:`MetricResult`: one score per example (so comparisons stay paired,
item by item) and the corpus aggregate the metric defines (a mean, or a pooled statistic for
BLEU and perplexities). Metrics are registered by name; a plug-in is a function decorated with
``@register_metric("name")``. Definitions follow the implementations people cite:

- ``exact_match``/``f1``: the official SQuAD v1.1 script (normalization, token-multiset F1,
  max over references; an empty answer scores 0, as in v1.1).
- ``rougeL``: Google's ``rouge-score`` (its tokenizer, LCS F-measure, max over references).
- ``bleu``: sacrebleu (``corpus_bleu`` defaults: 13a, 4-grams, ``exp`` smoothing, no
  effective order; per example ``sentence_bleu``, effective order). Without sacrebleu the same
  definition runs here. BLEU is on sacrebleu's 0-100 scale; every other score is 0-1 or a count.
- ``acc``/``acc_norm``: lm-evaluation-harness (``acc_norm`` divides by ``len(choice)``, which is
  characters there; ``length_unit="bytes"`` divides by UTF-8 bytes instead).
- ``perplexity``/``word_perplexity``/``bits_per_byte``: lm-eval's pooled aggregates.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

from demoai.errors import BackendUnavailable, InvalidArtifact

__all__ = [
    "MetricResult", "MetricFn", "register_metric", "get_metric", "metric_names",
    "normalize_answer", "exact_match", "token_f1", "rouge_tokenize", "rouge_l", "bleu",
    "accuracy", "accuracy_norm", "perplexity", "word_perplexity", "bits_per_byte",
    "regex_match", "contains", "json_valid", "json_schema_valid", "length", "greedy_acc",
]

References = Sequence[Union[str, Sequence[str]]]
MetricFn = Callable[..., "MetricResult"]


@dataclass(frozen=True)
class MetricResult:
    """A metric's scores: ``per_example`` (one per item, in order) and the ``corpus`` aggregate."""

    name: str
    per_example: tuple[float, ...]
    corpus: float
    details: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MetricFn] = {}


def register_metric(name: str, *, replace: bool = False) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric function under ``name``; a taken name needs ``replace``."""
    def deco(fn: MetricFn) -> MetricFn:
        if name in _REGISTRY and not replace and _REGISTRY[name] is not fn:
            raise InvalidArtifact(f"metric {name!r} is already registered", name=name)
        _REGISTRY[name] = fn
        return fn
    return deco


def get_metric(name: str) -> MetricFn:
    """The metric function registered as ``name``; an unknown name raises InvalidArtifact."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(metric_names())})"
        raise InvalidArtifact(f"unknown metric {name!r}{hint}", name=name,
                              suggestion=close[0] if close else None) from None


def metric_names() -> list[str]:
    """The registered metric names, sorted."""
    return sorted(_REGISTRY)


# -- helpers -----------------------------------------------------------------------------------

def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _refs(references: References, n: int) -> list[list[str]]:
    """One list of references per example (a bare string is a single reference)."""
    if len(references) != n:
        raise InvalidArtifact(f"{n} predictions but {len(references)} references")
    out = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not rs for rs in out):
        raise InvalidArtifact("an example has no reference")
    return out


def _result(name: str, scores: list[float], **details: Any) -> MetricResult:
    return MetricResult(name, tuple(scores), _mean(scores), details)


# -- SQuAD exact match and F1 ------------------------------------------------------------------

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1: lowercase, drop punctuation, drop articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _f1(pred: str, ref: str) -> float:
    p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


@register_metric("exact_match")
def exact_match(predictions: Sequence[str], references: References) -> MetricResult:
    """SQuAD exact match after normalization, max over references; corpus = mean."""
    refs = _refs(references, len(predictions))
    return _result("exact_match", [max(float(normalize_answer(p) == normalize_answer(r)) for r in rs)
                                   for p, rs in zip(predictions, refs)])


@register_metric("f1")
def token_f1(predictions: Sequence[str], references: References) -> MetricResult:
    """SQuAD token F1 over normalized token multisets, max over references; corpus = mean."""
    refs = _refs(references, len(predictions))
    return _result("f1", [max(_f1(p, r) for r in rs) for p, rs in zip(predictions, refs)])


# -- ROUGE-L -----------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID = re.compile(r"^[a-z0-9]+$")
_stemmer: Any = None


def _porter() -> Any:
    global _stemmer
    if _stemmer is None:
        try:
            from nltk.stem import porter  # the stemmer rouge-score itself uses
        except ImportError as e:
            raise BackendUnavailable("ROUGE stemming needs nltk (pip install nltk, or rouge-score)",
                                     package="nltk") from e
        _stemmer = porter.PorterStemmer()
    return _stemmer


def rouge_tokenize(text: str, use_stemmer: bool = False) -> list[str]:
    """rouge-score's default tokenizer: lowercase, non-[a-z0-9] to spaces, stem words over 3 chars."""
    tokens = re.split(r"\s+", _NON_ALNUM.sub(" ", text.lower()))
    if use_stemmer:
        stem = _porter().stem
        tokens = [stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if _VALID.match(t)]


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _rouge_l(target: list[str], pred: list[str]) -> float:
    if not target or not pred:
        return 0.0
    lcs = _lcs(target, pred)
    p, r = lcs / len(pred), lcs / len(target)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


@register_metric("rougeL")
def rouge_l(predictions: Sequence[str], references: References, *,
            use_stemmer: bool = False) -> MetricResult:
    """ROUGE-L F-measure as rouge-score computes it, max over references; corpus = mean."""
    refs = _refs(references, len(predictions))
    scores = []
    for p, rs in zip(predictions, refs):
        pt = rouge_tokenize(p, use_stemmer)
        scores.append(max(_rouge_l(rouge_tokenize(r, use_stemmer), pt) for r in rs))
    return _result("rougeL", scores, use_stemmer=use_stemmer)


# -- BLEU --------------------------------------------------------------------------------------

_13A = [(re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
        (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
        (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
        (re.compile(r"([0-9])(-)"), r"\1 \2 ")]


def _tok_13a(line: str) -> list[str]:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return line.split()


def _bleu_stats(hyp: str, refs: list[str], tokenize: str, lowercase: bool,
                order: int) -> list[int]:
    """[hyp_len, ref_len, correct_1..n, total_1..n] as sacrebleu counts them."""
    def toks(s: str) -> list[str]:
        s = (s.lower() if lowercase else s).rstrip()
        return _tok_13a(s) if tokenize == "13a" else s.split()

    def grams(t: list[str]) -> Counter:
        return Counter(tuple(t[i:i + n]) for n in range(1, order + 1) for i in range(len(t) - n + 1))

    ref_grams: Counter = Counter()
    ref_lens = []
    for r in refs:
        rt = toks(r)
        ref_lens.append(len(rt))
        for g, c in grams(rt).items():
            ref_grams[g] = max(ref_grams[g], c)
    ht = toks(hyp)
    ref_len = min(ref_lens, key=lambda n: (abs(len(ht) - n), n))  # closest, shorter on ties
    correct, total = [0] * order, [0] * order
    for g, c in grams(ht).items():
        total[len(g) - 1] += c
        correct[len(g) - 1] += min(c, ref_grams.get(g, 0))
    return [len(ht), ref_len, *correct, *total]


def _bleu_score(stats: list[int], order: int, smooth: str, effective_order: bool) -> float:
    sys_len, ref_len, correct, total = stats[0], stats[1], stats[2:2 + order], stats[2 + order:]
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    if not any(correct):
        return 0.0
    precisions, smooth_mteval, eff = [0.0] * order, 1.0, order
    for n in range(order):
        if total[n] == 0:
            break
        if effective_order:
            eff = n + 1
        if correct[n] == 0:
            if smooth == "exp":
                smooth_mteval *= 2
                precisions[n] = 100.0 / (smooth_mteval * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions[:eff]]
    return bp * math.exp(sum(logs) / eff)


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:
        return None
    return sacrebleu


@register_metric("bleu")
def bleu(predictions: Sequence[str], references: References, *, tokenize: str = "13a",
         lowercase: bool = False, smooth_method: str = "exp", max_ngram_order: int = 4,
         backend: str = "auto") -> MetricResult:
    """sacrebleu BLEU (0-100): corpus = ``corpus_bleu``, per example = ``sentence_bleu``.

    ``backend`` is ``"auto"`` (sacrebleu when installed), ``"sacrebleu"`` or ``"builtin"``
    (13a or ``none`` tokenization, ``exp`` or ``none`` smoothing)."""
    refs = _refs(references, len(predictions))
    sb = _sacrebleu() if backend in ("auto", "sacrebleu") else None
    if backend == "sacrebleu" and sb is None:
        raise BackendUnavailable("BLEU with backend='sacrebleu' needs sacrebleu", package="sacrebleu")
    if backend not in ("auto", "sacrebleu", "builtin"):
        raise InvalidArtifact(f"unknown BLEU backend {backend!r}", backend=backend)
    if sb is not None:
        width = max(len(rs) for rs in refs)
        streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(width)]
        kw = dict(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method,
                  max_ngram_order=max_ngram_order)
        corpus = sb.BLEU(**kw).corpus_score(list(predictions), streams).score
        sent = sb.BLEU(effective_order=True, **kw)
        per = [sent.sentence_score(p, rs).score for p, rs in zip(predictions, refs)]
        return MetricResult("bleu", tuple(per), corpus, {"backend": "sacrebleu"})
    if tokenize not in ("13a", "none") or smooth_method not in ("exp", "none"):
        raise BackendUnavailable(f"BLEU with tokenize={tokenize!r}, smooth_method={smooth_method!r}"
                                 " needs sacrebleu", package="sacrebleu")
    stats = [_bleu_stats(p, rs, tokenize, lowercase, max_ngram_order)
             for p, rs in zip(predictions, refs)]
    pooled = [sum(col) for col in zip(*stats)] or [0] * (2 + 2 * max_ngram_order)
    return MetricResult("bleu", tuple(_bleu_score(s, max_ngram_order, smooth_method, True) for s in stats),
                        _bleu_score(pooled, max_ngram_order, smooth_method, False),
                        {"backend": "builtin"})


# -- multiple choice ---------------------------------------------------------------------------

def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first of ties, like np.argmax


def _check_mc(loglikelihoods: Sequence[Sequence[float]], gold: Sequence[int]) -> None:
    if len(loglikelihoods) != len(gold):
        raise InvalidArtifact(f"{len(loglikelihoods)} examples but {len(gold)} gold labels")
    if any(not lls for lls in loglikelihoods):
        raise InvalidArtifact("an example has no choices")


@register_metric("acc")
def accuracy(loglikelihoods: Sequence[Sequence[float]], gold: Sequence[int]) -> MetricResult:
    """Multiple-choice accuracy: 1 where argmax of the choices' log-likelihoods is gold."""
    _check_mc(loglikelihoods, gold)
    return _result("acc", [float(_argmax(lls) == g) for lls, g in zip(loglikelihoods, gold)])


@register_metric("acc_norm")
def accuracy_norm(loglikelihoods: Sequence[Sequence[float]], gold: Sequence[int],
                  choices: Sequence[Sequence[str]], *, length_unit: str = "chars") -> MetricResult:
    """lm-eval's acc_norm: argmax of loglik / len(choice) ("chars", lm-eval's, or "bytes")."""
    _check_mc(loglikelihoods, gold)
    if length_unit not in ("chars", "bytes"):
        raise InvalidArtifact(f"length_unit must be 'chars' or 'bytes', not {length_unit!r}")
    scores = []
    for lls, g, texts in zip(loglikelihoods, gold, choices, strict=True):
        if len(texts) != len(lls):
            raise InvalidArtifact(f"{len(lls)} log-likelihoods but {len(texts)} choice texts")
        lens = [len(t.encode()) if length_unit == "bytes" else len(t) for t in texts]
        if 0 in lens:
            raise InvalidArtifact("acc_norm cannot normalize by an empty choice")
        scores.append(float(_argmax([ll / n for ll, n in zip(lls, lens)]) == g))
    return _result("acc_norm", scores, length_unit=length_unit)


# -- perplexities ------------------------------------------------------------------------------

def _pooled(name: str, nll: Sequence[float], counts: Sequence[int], scale: Callable[[float], float],
            unit: str) -> MetricResult:
    if len(nll) != len(counts):
        raise InvalidArtifact(f"{len(nll)} NLL values but {len(counts)} {unit} counts")
    if any(c <= 0 for c in counts):
        raise InvalidArtifact(f"{name} needs a positive {unit} count for every example")
    per = [scale(x / c) for x, c in zip(nll, counts)]
    corpus = scale(sum(nll) / sum(counts)) if counts else math.nan
    return MetricResult(name, tuple(per), corpus, {f"total_{unit}": sum(counts), "total_nll": sum(nll)})


@register_metric("perplexity")
def perplexity(nll: Sequence[float], tokens: Sequence[int]) -> MetricResult:
    """exp(NLL / tokens) from total NLL in nats; corpus pools: exp(sum NLL / sum tokens)."""
    return _pooled("perplexity", nll, tokens, math.exp, "tokens")


@register_metric("word_perplexity")
def word_perplexity(nll: Sequence[float], words: Sequence[int]) -> MetricResult:
    """lm-eval's word perplexity exp(NLL / words); corpus pools sums."""
    return _pooled("word_perplexity", nll, words, math.exp, "words")


@register_metric("bits_per_byte")
def bits_per_byte(nll: Sequence[float], num_bytes: Sequence[int]) -> MetricResult:
    """NLL / (ln 2 * bytes); corpus pools sums, as lm-eval's bits_per_byte does."""
    return _pooled("bits_per_byte", nll, num_bytes, lambda x: x / math.log(2), "bytes")


# -- text checks -------------------------------------------------------------------------------

@register_metric("regex_match")
def regex_match(predictions: Sequence[str], references: References | None = None, *,
                pattern: str | None = None, flags: int = 0, full: bool = False) -> MetricResult:
    """1 where the prediction matches a pattern (``re.search``, or ``re.fullmatch`` if full).

    Patterns are per example (``references``, any of several) or one ``pattern`` for all."""
    if (pattern is None) == (references is None):
        raise InvalidArtifact("regex_match takes either references (patterns) or pattern")
    pats = _refs(references, len(predictions)) if references is not None else \
        [[pattern]] * len(predictions)
    try:
        find = re.fullmatch if full else re.search
        scores = [float(any(find(p, x, flags) for p in ps)) for x, ps in zip(predictions, pats)]
    except re.error as e:
        raise InvalidArtifact(f"bad regular expression: {e}") from e
    return _result("regex_match", scores)


@register_metric("contains")
def contains(predictions: Sequence[str], references: References, *,
             case_sensitive: bool = True) -> MetricResult:
    """1 where the prediction contains a reference (any of several) as a substring."""
    refs = _refs(references, len(predictions))
    f = (lambda s: s) if case_sensitive else str.casefold
    return _result("contains", [float(any(f(r) in f(p) for r in rs)) for p, rs in zip(predictions, refs)])


_INVALID = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN/Infinity; RFC 8259 does not


def _parse_json(s: str) -> Any:
    try:
        return json.loads(s, parse_constant=_reject_constant)
    except (ValueError, TypeError):
        return _INVALID


@register_metric("json_valid")
def json_valid(predictions: Sequence[str]) -> MetricResult:
    """1 where the prediction parses as JSON."""
    return _result("json_valid", [float(_parse_json(p) is not _INVALID) for p in predictions])


@register_metric("json_schema_valid")
def json_schema_valid(predictions: Sequence[str], schema: dict[str, Any]) -> MetricResult:
    """1 where the prediction parses as JSON and validates against ``schema`` (jsonschema)."""
    try:
        import jsonschema
    except ImportError as e:
        raise BackendUnavailable("json_schema_valid needs jsonschema (pip install jsonschema)",
                                 package="jsonschema") from e
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidArtifact(f"invalid JSON schema: {e.message}") from e
    validator, scores = cls(schema), []
    for p in predictions:
        value = _parse_json(p)
        scores.append(0.0 if value is _INVALID else float(validator.is_valid(value)))
    return _result("json_schema_valid", scores)


@register_metric("length")
def length(predictions: Sequence[str], *, unit: str = "chars") -> MetricResult:
    """Length of each prediction in ``"chars"`` or whitespace ``"words"``; corpus = mean."""
    if unit not in ("chars", "words"):
        raise InvalidArtifact(f"length unit must be 'chars' or 'words', not {unit!r}")
    return _result("length", [float(len(p) if unit == "chars" else len(p.split())) for p in predictions],
                   unit=unit)


@register_metric("greedy_acc")
def greedy_acc(is_greedy: Sequence[bool]) -> MetricResult:
    """1 where every token of the continuation is the model's greedy choice (lm-eval's
    ``acc`` of a loglikelihood task such as LAMBADA)."""
    return _result("greedy_acc", [float(bool(g)) for g in is_greedy])
