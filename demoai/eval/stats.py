"""The statistics of evaluation: standard errors, bootstrap intervals, paired tests, the gate.

Every aggregate an evaluation reports carries an uncertainty, and every comparison of two
evaluations is paired, item by item, on the items both share:

- :func:`summarize` -- mean, standard error (sample standard deviation with ``ddof=1`` over
  ``sqrt(n)``, as lm-evaluation-harness reports it for mean metrics) and a seeded percentile
  bootstrap interval.
- :func:`bootstrap_ci` -- the same interval for a pooled statistic (perplexity
  ``exp(sum nll / sum tokens)``, corpus BLEU from summed per-example counts, ...).
- :func:`paired_bootstrap`, :func:`mcnemar`, :func:`flips` -- the paired comparison of a base
  ``a`` and a candidate ``b``: the effect ``delta = mean(b) - mean(a)`` with its interval and a
  two-sided p-value, and the items that flipped.
- :func:`gate_decision` -- pass / fail / inconclusive for a regression gate.

Resampling draws the row indices of every round from ``numpy.random.default_rng(seed)``, so the
same input and seed give the same interval on every machine. Rounds are processed in blocks
so that 1,000 rounds over 10,000 items need a few tens of MB and well under a second.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Hashable, Iterator, Literal, Mapping, Sequence

import numpy as np

from demoai.errors import InvalidArtifact

__all__ = [
    "Estimate", "PairedTest", "Flips", "GateDecision", "GateOutcome",
    "summarize", "bootstrap_ci", "paired_bootstrap", "mcnemar", "flips", "gate_decision",
    "align", "binom_two_sided_p", "MCNEMAR_EXACT_BELOW",
]

GateOutcome = Literal["pass", "fail", "inconclusive"]

#: :func:`mcnemar` uses the exact binomial test when the discordant pairs number fewer than
#: this, and the chi-squared test with Edwards' continuity correction from there on.
MCNEMAR_EXACT_BELOW = 25

_BLOCK_CELLS = 2_000_000          # rounds x items per resampling block (~16 MB of int64)


def _clean(v: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars plain Python."""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


@dataclass(frozen=True)
class Estimate:
    """A statistic with its uncertainty: ``value`` (the mean, or the pooled statistic),
    ``stderr``, the percentile-bootstrap interval ``[lower, upper]`` at ``confidence``, ``n``
    items. ``stderr`` is NaN for a single item (``None`` in :meth:`to_dict`)."""

    value: float
    stderr: float
    lower: float
    upper: float
    n: int
    confidence: float
    rounds: int
    seed: int
    method: str = "percentile bootstrap"

    @property
    def mean(self) -> float:
        """Alias of ``value`` for mean metrics."""
        return self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (non-finite numbers as None)."""
        return _clean(asdict(self))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of base ``a`` and candidate ``b`` on ``n`` shared items.

    ``delta = mean_b - mean_a`` with its percentile-bootstrap interval ``[lower, upper]`` at
    ``confidence``; ``p_value`` is two-sided against ``delta == 0``. ``method`` is
    ``"paired_bootstrap"``, ``"mcnemar_exact"`` or ``"mcnemar_chi2"``; McNemar's tests also
    carry ``b01`` (a fail, b pass) and ``b10`` (a pass, b fail) and their ``statistic``.
    ``replicates`` holds the bootstrap values of delta (kept for :func:`gate_decision`; not in
    :meth:`to_dict`)."""

    method: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    lower: float
    upper: float
    p_value: float
    confidence: float
    rounds: int
    seed: int
    statistic: float | None = None
    b01: int | None = None
    b10: int | None = None
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, without the replicates."""
        d = {k: v for k, v in asdict(self).items() if k != "replicates"}
        return _clean(d)


@dataclass(frozen=True)
class Flips:
    """Items whose pass/fail changed from base to candidate (indices, or ids when given)."""

    pass_to_fail: tuple[Any, ...]
    fail_to_pass: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"pass_to_fail": _clean(list(self.pass_to_fail)),
                "fail_to_pass": _clean(list(self.fail_to_pass))}


@dataclass(frozen=True)
class GateDecision:
    """The outcome of a regression gate (see :func:`gate_decision` for the rule).

    ``effect`` is the change oriented so that positive means the candidate is better
    (``delta``, or ``-delta`` when lower is better); ``[lower, upper]`` is its two-sided
    ``confidence = 1 - alpha`` interval, the interval the decision used; ``reason`` says why
    in one sentence."""

    outcome: GateOutcome
    effect: float
    lower: float
    upper: float
    confidence: float
    margin: float
    alpha: float
    higher_is_better: bool
    delta: float
    p_value: float
    method: str
    n: int
    reason: str
    test: PairedTest = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the test nested."""
        d = {k: v for k, v in asdict(self).items() if k != "test"}
        d["test"] = self.test.to_dict()
        return _clean(d)


# -- validation and resampling -------------------------------------------------------------

def _as_scores(x: Any, name: str = "scores", *, allow_empty: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArtifact(f"{name}: not numbers ({e})", name=name) from None
    if arr.ndim != 1:
        raise InvalidArtifact(f"{name}: expected one score per item, got shape {arr.shape}",
                              name=name)
    if arr.size == 0 and not allow_empty:
        raise InvalidArtifact(f"{name}: no items to summarize (n=0)", name=name)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidArtifact(f"{name}: item {bad} is not a finite number ({arr[bad]})",
                              name=name, index=bad)
    return arr


def _as_pass(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidArtifact(f"{name}: expected one pass/fail per item, got shape {arr.shape}",
                              name=name)
    if arr.dtype != bool:
        try:
            num = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidArtifact(f"{name}: pass/fail values must be booleans or 0/1",
                                  name=name) from None
        if not np.all((num == 0) | (num == 1)):
            raise InvalidArtifact(f"{name}: pass/fail values must be booleans or 0/1",
                                  name=name)
        arr = num.astype(bool)
    return arr


def _check_params(rounds: int, confidence: float) -> None:
    if not isinstance(rounds, (int, np.integer)) or isinstance(rounds, bool) or rounds < 1:
        raise InvalidArtifact(f"rounds must be a positive integer, got {rounds!r}")
    if not (0.0 < float(confidence) < 1.0):
        raise InvalidArtifact(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _blocks(n: int, rounds: int, seed: int) -> Iterator[np.ndarray]:
    """Resampled row indices, shape (block, n), for ``rounds`` rounds in all."""
    rng = np.random.default_rng(seed)
    per = max(1, _BLOCK_CELLS // max(n, 1))
    done = 0
    while done < rounds:
        b = min(per, rounds - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _count_blocks(n: int, rounds: int, seed: int) -> Iterator[np.ndarray]:
    """How often each row is drawn in each round, shape (block, n), float64: the same
    resamples as :func:`_blocks`, as weights (a sum over a resample is ``counts @ x``)."""
    for idx in _blocks(n, rounds, seed):
        b = idx.shape[0]
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _interval(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _boot_means(x: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    n = x.shape[0]
    return np.concatenate([c @ x for c in _count_blocks(n, rounds, seed)]) / n


# -- estimates -----------------------------------------------------------------------------

def summarize(scores: Sequence[float] | np.ndarray, *, seed: int = 0, rounds: int = 1000,
              confidence: float = 0.95) -> Estimate:
    """Mean of per-item ``scores`` with its standard error (``ddof=1``) and a seeded
    percentile-bootstrap interval. No items raise InvalidArtifact; one item gives a zero-width
    interval and a NaN standard error; non-finite scores raise InvalidArtifact."""
    _check_params(rounds, confidence)
    x = _as_scores(scores)
    n = x.size
    mean = float(x.mean())
    stderr = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    lo, hi = _interval(_boot_means(x, rounds, seed), confidence)
    return Estimate(value=mean, stderr=stderr, lower=lo, upper=hi, n=n,
                    confidence=float(confidence), rounds=int(rounds), seed=int(seed))


def bootstrap_ci(fn: Callable[..., Any], columns: Sequence[Any] | np.ndarray, *, seed: int = 0,
                 rounds: int = 1000, confidence: float = 0.95,
                 totals: bool = False) -> Estimate:
    """A pooled statistic of per-item columns with a seeded percentile-bootstrap interval.

    ``columns`` are equal-length per-item arrays (shape ``(n,)`` or ``(n, k)``, e.g. BLEU's
    per-sentence n-gram counts). Rows are resampled together, and ``fn`` is vectorized over
    rounds:

    - ``totals=False``: ``fn(*cols)`` gets each column resampled, shape ``(B, n)`` (or
      ``(B, n, k)``), and returns ``B`` values, reducing over axis 1 --
      ``lambda nll, tok: np.exp(nll.sum(1) / tok.sum(1))``.
    - ``totals=True`` (faster, for statistics of column sums): ``fn`` gets each column's total
      per round, shape ``(B,)`` (or ``(B, k)``) -- ``lambda nll, tok: np.exp(nll / tok)``.

    ``value`` is ``fn`` on the data as given (``B = 1``), ``stderr`` the standard deviation of
    the bootstrap values (``ddof=1``). Rounds where ``fn`` is not finite (e.g. a resample with
    no tokens) are left out, and ``rounds`` in the result counts the rounds used."""
    _check_params(rounds, confidence)
    if isinstance(columns, np.ndarray) and columns.ndim == 1:
        columns = [columns]
    cols = []
    for i, c in enumerate(columns):
        arr = np.asarray(c, dtype=np.float64)
        if arr.ndim not in (1, 2):
            raise InvalidArtifact(f"column {i}: expected shape (n,) or (n, k), got {arr.shape}")
        cols.append(arr)
    if not cols:
        raise InvalidArtifact("bootstrap_ci: no columns given")
    n = cols[0].shape[0]
    if any(c.shape[0] != n for c in cols):
        raise InvalidArtifact("bootstrap_ci: columns differ in length",
                              lengths=[int(c.shape[0]) for c in cols])
    if n == 0:
        raise InvalidArtifact("bootstrap_ci: no items (n=0)")

    def call(*args: np.ndarray) -> np.ndarray:
        out = np.asarray(fn(*args), dtype=np.float64).reshape(-1)
        if out.shape[0] != args[0].shape[0]:
            raise InvalidArtifact(f"bootstrap_ci: fn returned {out.shape[0]} values for "
                                  f"{args[0].shape[0]} rounds; reduce over axis 1")
        return out

    if totals:
        value = call(*[c.sum(axis=0)[None] for c in cols])[0]
        reps = np.concatenate([call(*[w @ c for c in cols])
                               for w in _count_blocks(n, rounds, seed)])
    else:
        value = call(*[c[None] for c in cols])[0]
        reps = np.concatenate([call(*[c[idx] for c in cols])
                               for idx in _blocks(n, rounds, seed)])
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        raise InvalidArtifact("bootstrap_ci: the statistic is not finite on any resample")
    lo, hi = _interval(finite, confidence)
    stderr = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return Estimate(value=float(value), stderr=stderr, lower=lo, upper=hi, n=n,
                    confidence=float(confidence), rounds=int(finite.size), seed=int(seed))


# -- paired comparisons --------------------------------------------------------------------

def align(a: Mapping[Hashable, Any], b: Mapping[Hashable, Any]
          ) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """The items both ``{item_id: score}`` maps share, sorted by id (by ``str`` when ids are
    of mixed types): ``(ids, a_scores, b_scores)``."""
    shared = set(a) & set(b)
    try:
        ids = sorted(shared)
    except TypeError:
        ids = sorted(shared, key=str)
    return (ids, np.asarray([a[i] for i in ids], dtype=np.float64),
            np.asarray([b[i] for i in ids], dtype=np.float64))


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    xa, xb = _as_scores(a, "a"), _as_scores(b, "b")
    if xa.shape != xb.shape:
        raise InvalidArtifact(f"paired scores differ in length: {xa.size} vs {xb.size}; "
                              "compare only the items both share (see align)",
                              n_a=int(xa.size), n_b=int(xb.size))
    return xa, xb


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                     seed: int = 0, rounds: int = 1000,
                     confidence: float = 0.95) -> PairedTest:
    """Paired bootstrap of ``delta = mean(b) - mean(a)`` over items resampled together.

    The interval is the percentile interval of the resampled deltas. The two-sided p-value
    tests ``delta == 0`` with the bootstrap distribution shifted to the null,
    ``p = (1 + #{|delta* - delta| >= |delta|}) / (rounds + 1)``, so it is never 0."""
    _check_params(rounds, confidence)
    xa, xb = _pair(a, b)
    d = xb - xa
    delta = float(d.mean())
    reps = _boot_means(d, rounds, seed)
    lo, hi = _interval(reps, confidence)
    # Ties at |delta| (e.g. all differences equal) must count as "as extreme".
    tol = 1e-12 * max(1.0, abs(delta))
    extreme = int(np.count_nonzero(np.abs(reps - delta) >= abs(delta) - tol))
    p = (1 + extreme) / (rounds + 1)
    return PairedTest(method="paired_bootstrap", n=int(d.size), mean_a=float(xa.mean()),
                      mean_b=float(xb.mean()), delta=delta, lower=lo, upper=hi,
                      p_value=float(min(1.0, p)),
                      confidence=float(confidence), rounds=int(rounds), seed=int(seed),
                      replicates=reps)


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair-coin trials, as McNemar's exact
    test defines it: ``min(1, 2 * P(X <= min(k, n - k)))``. Exact integer arithmetic up to
    n = 2000, log-space sums beyond."""
    if n < 0 or not 0 <= k <= n:
        raise InvalidArtifact(f"binomial test: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    m = min(k, n - k)
    if n <= 2000:
        tail = sum(math.comb(n, i) for i in range(m + 1))
        return min(1.0, 2 * tail / 2 ** n)
    i = np.arange(m + 1, dtype=np.float64)
    lg = np.vectorize(math.lgamma)
    logs = math.lgamma(n + 1) - lg(i + 1) - lg(n - i + 1) - n * math.log(2.0)
    return float(min(1.0, 2.0 * math.exp(np.logaddexp.reduce(logs))))


def mcnemar(a_pass: Sequence[bool] | np.ndarray, b_pass: Sequence[bool] | np.ndarray, *,
            exact: bool | None = None, seed: int = 0, rounds: int = 1000,
            confidence: float = 0.95) -> PairedTest:
    """McNemar's test of paired pass/fail outcomes of base ``a`` and candidate ``b``.

    ``b01`` counts items a failed and b passed, ``b10`` items a passed and b failed. With
    ``exact=None`` the rule is: the exact binomial test on the discordant pairs when
    ``b01 + b10 < MCNEMAR_EXACT_BELOW`` (25), otherwise the chi-squared statistic with
    continuity correction ``(|b01 - b10| - 1)^2 / (b01 + b10)`` on 1 degree of freedom (both as
    statsmodels' ``mcnemar`` computes them). ``exact=True``/``False`` forces one. The interval
    of ``delta = (b01 - b10) / n`` is the paired bootstrap's (seeded)."""
    _check_params(rounds, confidence)
    pa_, pb = _as_pass(a_pass, "a_pass"), _as_pass(b_pass, "b_pass")
    if pa_.shape != pb.shape:
        raise InvalidArtifact(f"paired outcomes differ in length: {pa_.size} vs {pb.size}",
                              n_a=int(pa_.size), n_b=int(pb.size))
    if pa_.size == 0:
        raise InvalidArtifact("mcnemar: no items (n=0)")
    b01 = int(np.count_nonzero(~pa_ & pb))
    b10 = int(np.count_nonzero(pa_ & ~pb))
    disc = b01 + b10
    use_exact = disc < MCNEMAR_EXACT_BELOW if exact is None else bool(exact)
    if use_exact:
        stat, p, method = float(min(b01, b10)), binom_two_sided_p(min(b01, b10), disc), \
            "mcnemar_exact"
    else:
        stat = (abs(b01 - b10) - 1.0) ** 2 / disc if disc else 0.0
        p, method = (math.erfc(math.sqrt(stat / 2.0)) if disc else 1.0), "mcnemar_chi2"
    boot = paired_bootstrap(pa_.astype(np.float64), pb.astype(np.float64), seed=seed,
                            rounds=rounds, confidence=confidence)
    return PairedTest(method=method, n=int(pa_.size), mean_a=boot.mean_a, mean_b=boot.mean_b,
                      delta=boot.delta, lower=boot.lower, upper=boot.upper, p_value=float(p),
                      confidence=float(confidence), rounds=int(rounds), seed=int(seed),
                      statistic=stat, b01=b01, b10=b10, replicates=boot.replicates)


def flips(a_pass: Sequence[bool] | np.ndarray, b_pass: Sequence[bool] | np.ndarray,
          ids: Sequence[Any] | None = None) -> Flips:
    """The items that went pass -> fail and fail -> pass from base ``a`` to candidate ``b``:
    their indices, or their ``ids`` when given (in item order)."""
    pa_, pb = _as_pass(a_pass, "a_pass"), _as_pass(b_pass, "b_pass")
    if pa_.shape != pb.shape:
        raise InvalidArtifact(f"paired outcomes differ in length: {pa_.size} vs {pb.size}")
    if ids is not None and len(ids) != pa_.size:
        raise InvalidArtifact(f"flips: {len(ids)} ids for {pa_.size} items")
    p2f = np.flatnonzero(pa_ & ~pb).tolist()
    f2p = np.flatnonzero(~pa_ & pb).tolist()
    if ids is not None:
        p2f, f2p = [ids[i] for i in p2f], [ids[i] for i in f2p]
    return Flips(pass_to_fail=tuple(p2f), fail_to_pass=tuple(f2p))


# -- the regression gate -------------------------------------------------------------------

def gate_decision(test: PairedTest, *, margin: float = 0.0, alpha: float = 0.05,
                  higher_is_better: bool = True) -> GateDecision:
    """Decide a regression gate from a paired test of base ``a`` and candidate ``b``.

    Let ``effect`` be the change oriented so that positive is better (``delta``, or ``-delta``
    when ``higher_is_better=False``) and ``[L, U]`` its two-sided ``1 - alpha`` percentile
    bootstrap interval (from the test's replicates; for ``alpha=0.05`` the 95% interval). The
    rule, with ``margin >= 0`` in the metric's units:

    - **fail** when ``U < -margin``: the candidate is worse by more than the margin with
      significance (a one-sided test at level ``alpha / 2`` rejects ``effect >= -margin``);
    - **pass** when ``L >= -margin``: the data show it is not worse by more than the margin
      (non-inferiority at one-sided level ``alpha / 2``);
    - **inconclusive** otherwise: the interval straddles ``-margin``; more items are needed.

    This is the two-sided-interval convention of non-inferiority trials. Pass and fail exclude
    each other. A test without replicates (read back from JSON) is decided on its stored
    interval, which must then be at confidence ``1 - alpha``."""
    if not isinstance(test, PairedTest):
        raise InvalidArtifact(f"gate_decision needs a PairedTest, got {type(test).__name__}")
    if not (math.isfinite(margin) and margin >= 0):
        raise InvalidArtifact(f"margin must be a finite number >= 0, got {margin!r}")
    if not (0.0 < alpha < 1.0):
        raise InvalidArtifact(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    confidence = 1.0 - alpha
    if test.replicates is not None and len(test.replicates):
        lo, hi = _interval(np.asarray(test.replicates), confidence)
    elif abs(test.confidence - confidence) < 1e-9:
        lo, hi = test.lower, test.upper
    else:
        raise InvalidArtifact(f"the test's interval is at confidence {test.confidence}, the "
                              f"gate needs {confidence} and the test has no replicates")
    sign = 1.0 if higher_is_better else -1.0
    effect = sign * test.delta
    lower, upper = (lo, hi) if higher_is_better else (-hi, -lo)
    what = "higher" if higher_is_better else "lower"
    ci = f"effect {effect:+.4g}, {confidence:.0%} CI [{lower:+.4g}, {upper:+.4g}]"
    if upper < -margin:
        outcome: GateOutcome = "fail"
        reason = f"candidate is worse by more than the margin {margin:g}: {ci} lies below " \
                 f"{-margin:+g} ({what} is better)"
    elif lower >= -margin:
        outcome = "pass"
        reason = f"candidate is not worse by more than the margin {margin:g}: {ci} lies at " \
                 f"or above {-margin:+g} ({what} is better)"
    else:
        outcome = "inconclusive"
        reason = f"{ci} straddles {-margin:+g}: the items cannot tell whether the candidate " \
                 f"is worse by more than the margin {margin:g}"
    return GateDecision(outcome=outcome, effect=effect, lower=lower, upper=upper,
                        confidence=confidence, margin=float(margin), alpha=float(alpha),
                        higher_is_better=bool(higher_is_better), delta=test.delta,
                        p_value=test.p_value, method=test.method, n=test.n, reason=reason,
                        test=test)
