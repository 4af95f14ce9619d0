"""Arena ratings: Bradley-Terry maximum likelihood on the Elo scale, as Chatbot Arena computes
them, with seeded bootstrap intervals and ranks.

The model: ``P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400))``. A tie counts as half a win
each way (Chatbot Arena's weighting: a decided battle weighs 2 for its winner, a tie 1 for
each side). The ratings are the maximum-likelihood fit, which depends only on the pairwise
win/tie counts, so the battles' order never matters. The fit is Newton's method on those
counts (with step halving), vectorized over bootstrap rounds.

Anchoring: with ``anchor=None`` the mean rating is ``anchor_rating`` (1000), which is also
what an unpenalized logistic regression without intercept started at zero returns; with
``anchor="model"`` that model's rating is ``anchor_rating`` in the fit and in every bootstrap
round (so its own interval has zero width, as in Chatbot Arena's anchoring).

Degenerate data: a tiny ridge ``ridge * sum(theta ** 2) / 2`` on the natural log-odds scale
(default 1e-4) keeps every fit finite; it moves the ratings of models with a few dozen battles
by far less than 0.01 point. Where the maximum-likelihood estimate does not exist -- a model
that won (or lost) every battle, or more generally a win graph that is not strongly
connected -- the ridge decides how far apart the ratings sit; :attr:`Leaderboard.mle_exists`
is then False and :attr:`Leaderboard.separated` names the models that won or lost all their
battles. Models that are not linked by any chain of battles cannot be put on one scale:
that raises InvalidArtifact.

Bootstrap: a round resamples the battles with replacement, which is a multinomial draw of the
counts per (pair, outcome) -- the same distribution without re-reading the battles. Intervals
are percentile intervals of the rounds' ratings (in a round where a model happens to draw no
battle, the ridge holds it at the mean); ``rank = 1 + the number of models whose
lower bound exceeds this model's upper bound``, as Chatbot Arena ranks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from demoai.errors import InvalidArtifact

__all__ = [
    "LeaderboardRow", "Leaderboard", "ratings", "bradley_terry", "count_battles",
    "BattleCounts", "SCALE", "BASE", "DEFAULT_RIDGE", "WINNER_ALIASES",
]

SCALE = 400.0
BASE = 10.0
DEFAULT_RIDGE = 1e-4
#: Accepted spellings of a battle's outcome (Chatbot Arena's column values included).
WINNER_ALIASES = {"a": "a", "model_a": "a", "b": "b", "model_b": "b", "tie": "tie",
                  "tie (bothbad)": "tie"}
_POINTS = SCALE / math.log(BASE)          # Elo points per natural log-odds unit
_BLOCK_CELLS = 4_000_000


def _nan_to_none(m: Sequence[Sequence[float]]) -> list[list[float | None]]:
    return [[None if (v is None or not math.isfinite(v)) else float(v) for v in r] for r in m]


@dataclass(frozen=True)
class LeaderboardRow:
    """One model: its rating and interval, rank, and battle tallies (ties counted once)."""

    model: str
    rating: float
    lower: float
    upper: float
    rank: int
    battles: int
    wins: int
    losses: int
    ties: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class Leaderboard:
    """Ratings of the models, best first; matrices are indexed in ``models`` order.

    ``win_rate[i][j]``: share of i's battles against j that i won, ties counting half (None
    where they never met or i == j). ``predicted_win_rate[i][j]``: the rating model's
    ``P(i beats j)``. ``battle_counts[i][j]``: battles between i and j."""

    rows: tuple[LeaderboardRow, ...]
    models: tuple[str, ...]
    win_rate: tuple[tuple[float | None, ...], ...]
    predicted_win_rate: tuple[tuple[float, ...], ...]
    battle_counts: tuple[tuple[int, ...], ...]
    battles: int
    skipped: int
    rounds: int
    seed: int
    confidence: float
    anchor: str | None
    anchor_rating: float
    ridge: float
    mle_exists: bool
    separated: tuple[str, ...] = ()
    scale: float = SCALE
    ties: str = "half a win each way"
    method: str = "bradley-terry mle (newton), multinomial bootstrap"
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)

    def row(self, model: str) -> LeaderboardRow:
        """The row of ``model``; an unknown name raises InvalidArtifact."""
        for r in self.rows:
            if r.model == model:
                return r
        raise InvalidArtifact(f"model {model!r} is not on the leaderboard", model=model)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the bootstrap samples left out)."""
        return {"rows": [r.to_dict() for r in self.rows], "models": list(self.models),
                "win_rate": _nan_to_none(self.win_rate),
                "predicted_win_rate": [list(r) for r in self.predicted_win_rate],
                "battle_counts": [list(r) for r in self.battle_counts],
                "battles": self.battles, "skipped": self.skipped, "rounds": self.rounds,
                "seed": self.seed, "confidence": self.confidence, "anchor": self.anchor,
                "anchor_rating": self.anchor_rating, "ridge": self.ridge,
                "mle_exists": self.mle_exists, "separated": list(self.separated),
                "scale": self.scale, "ties": self.ties, "method": self.method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Leaderboard":
        """Rebuild a leaderboard from :meth:`to_dict`'s form."""
        try:
            return cls(rows=tuple(LeaderboardRow(**r) for r in d["rows"]),
                       models=tuple(d["models"]),
                       win_rate=tuple(tuple(float("nan") if v is None else v for v in r)
                                      for r in d["win_rate"]),
                       predicted_win_rate=tuple(tuple(r) for r in d["predicted_win_rate"]),
                       battle_counts=tuple(tuple(r) for r in d["battle_counts"]),
                       **{k: d[k] for k in ("battles", "skipped", "rounds", "seed",
                                            "confidence", "anchor", "anchor_rating", "ridge",
                                            "mle_exists")},
                       separated=tuple(d.get("separated", ())), scale=d.get("scale", SCALE),
                       ties=d.get("ties", "half a win each way"),
                       method=d.get("method", cls.method))
        except (KeyError, TypeError) as e:
            raise InvalidArtifact(f"not a leaderboard: {e}") from None


@dataclass(frozen=True)
class BattleCounts:
    """Battles tallied per ordered pair: ``outcomes[i, j]`` = (i beat j, j beat i, ties) over
    battles of i and j in either position, for ``i < j`` (zeros below the diagonal)."""

    models: tuple[str, ...]
    outcomes: np.ndarray
    skipped: int

    @property
    def wins(self) -> np.ndarray:
        """``W[i, j]``: wins of i over j with ties as half a win each way."""
        o = self.outcomes
        return o[..., 0] + o[..., 1].T + 0.5 * (o[..., 2] + o[..., 2].T)


def _rows_of(battles: Any) -> Iterable[tuple[Any, Any, Any]]:
    if hasattr(battles, "column_names") and hasattr(battles, "to_pydict"):   # pyarrow.Table
        battles = battles.to_pydict()
    if isinstance(battles, dict):
        try:
            cols = [list(battles[k]) for k in ("model_a", "model_b", "winner")]
        except KeyError as e:
            raise InvalidArtifact(f"battle columns need model_a, model_b, winner; missing {e}")\
                from None
        if len({len(c) for c in cols}) != 1:
            raise InvalidArtifact("battle columns differ in length",
                                  lengths=[len(c) for c in cols])
        return zip(*cols)
    out = []
    for k, b in enumerate(battles):
        if isinstance(b, dict):
            out.append((b.get("model_a"), b.get("model_b"),
                        None if b.get("error") else b.get("winner")))
        elif hasattr(b, "model_a") and hasattr(b, "winner"):
            out.append((b.model_a, b.model_b, None if getattr(b, "error", None) else b.winner))
        elif isinstance(b, (tuple, list)) and len(b) == 3:
            out.append(tuple(b))
        else:
            raise InvalidArtifact(f"battle {k}: expected (model_a, model_b, winner), got {b!r}",
                                  index=k)
    return out


def count_battles(battles: Any) -> BattleCounts:
    """Tally battles -- ``(model_a, model_b, winner)`` tuples, dicts or objects with those
    fields (an ``error`` set, or a winner of None, skips the battle and counts it in
    ``skipped``), or columns ``{"model_a": [...], ...}`` / a pyarrow table. ``winner`` is one of
    :data:`WINNER_ALIASES`. Models are indexed in sorted name order."""
    raw = []
    skipped = 0
    for k, (a, b, w) in enumerate(_rows_of(battles)):
        if w is None:
            skipped += 1
            continue
        if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
            raise InvalidArtifact(f"battle {k}: model names must be non-empty strings", index=k)
        if a == b:
            raise InvalidArtifact(f"battle {k}: {a!r} against itself", index=k, model=a)
        o = WINNER_ALIASES.get(w) if isinstance(w, str) else None
        if o is None:
            raise InvalidArtifact(f"battle {k}: winner must be 'a', 'b' or 'tie', got {w!r}",
                                  index=k)
        raw.append((a, b, o))
    models = tuple(sorted({m for a, b, _ in raw for m in (a, b)}))
    idx = {m: i for i, m in enumerate(models)}
    out = np.zeros((len(models), len(models), 3), dtype=np.int64)
    for a, b, o in raw:
        i, j = idx[a], idx[b]
        if i > j:
            i, j, o = j, i, {"a": "b", "b": "a", "tie": "tie"}[o]
        out[i, j, {"a": 0, "b": 1, "tie": 2}[o]] += 1
    return BattleCounts(models=models, outcomes=out, skipped=skipped)


def _components(n_ij: np.ndarray) -> list[list[int]]:
    p = n_ij.shape[0]
    seen = [False] * p
    comps = []
    for s in range(p):
        if seen[s]:
            continue
        stack, comp = [s], []
        seen[s] = True
        while stack:
            u = stack.pop()
            comp.append(u)
            for v in np.flatnonzero(n_ij[u]):
                if not seen[v]:
                    seen[v] = True
                    stack.append(int(v))
        comps.append(sorted(comp))
    return comps


def _strongly_connected(w: np.ndarray) -> bool:
    """Whether every model reaches every other along "beat (or tied) with" edges."""
    adj = w > 0
    p = adj.shape[0]
    for a in (adj, adj.T):
        reach = np.zeros(p, dtype=bool)
        reach[0] = True
        while True:
            nxt = reach | a[reach].any(axis=0)
            if nxt.sum() == reach.sum():
                break
            reach = nxt
        if not reach.all():
            return False
    return True


def _loglik(w: np.ndarray, theta: np.ndarray, ridge: float) -> np.ndarray:
    d = theta[:, :, None] - theta[:, None, :]
    return -(w * np.logaddexp(0.0, -d)).sum(axis=(1, 2)) - 0.5 * ridge * (theta ** 2).sum(1)


def bradley_terry(wins: np.ndarray, *, ridge: float = DEFAULT_RIDGE, tol: float = 1e-10,
                  max_iter: int = 200) -> np.ndarray:
    """Bradley-Terry strengths (natural log-odds, mean 0) maximizing the ridge-penalized
    likelihood of ``wins[i, j]`` (wins of i over j, ties as halves), shape ``(p, p)`` or a
    batch ``(B, p, p)``. Newton's method with step halving; ``ridge`` must be > 0."""
    if not ridge > 0:
        raise InvalidArtifact(f"ridge must be > 0, got {ridge!r}")
    w = np.asarray(wins, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise InvalidArtifact(f"wins must be (p, p) or (B, p, p), got {w.shape}")
    bsz, p, _ = w.shape
    n = w + w.transpose(0, 2, 1)
    theta = np.zeros((bsz, p))
    eye = np.eye(p)
    shift = np.full((p, p), 1.0 / p)             # fixes the free constant; keeps the mean 0
    f = _loglik(w, theta, ridge)
    active = np.ones(bsz, dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        ia = np.flatnonzero(active)
        th, wa, na = theta[ia], w[ia], n[ia]
        d = th[:, :, None] - th[:, None, :]
        pr = 0.5 * (1.0 + np.tanh(0.5 * d))
        grad = (wa - na * pr).sum(2) - ridge * th
        c = na * pr * (1.0 - pr)
        hess = c.sum(2)[:, :, None] * eye - c + ridge * eye + shift
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        big = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, 2.0 / np.maximum(big, 1e-300))[:, None]
        f0 = f[ia]
        t = np.ones(len(ia))
        for _h in range(40):
            new = th + t[:, None] * step
            f1 = _loglik(wa, new, ridge)
            bad = f1 < f0 - 1e-12 * np.abs(f0)
            if not bad.any():
                break
            t[bad] *= 0.5
        theta[ia] = new
        f[ia] = f1
        active[ia] = (t * np.abs(step).max(axis=1)) > tol
    theta -= theta.mean(axis=1, keepdims=True)
    return theta[0] if single else theta


def _fit_rounds(pairs: tuple[np.ndarray, np.ndarray], counts: np.ndarray,
                p: int, ridge: float) -> np.ndarray:
    """Strengths for each row of ``counts`` (B, K): counts per (pair, outcome) category."""
    bsz = counts.shape[0]
    i, j = pairs
    per = counts.reshape(bsz, -1, 3).astype(np.float64)
    w = np.zeros((bsz, p, p))
    w[:, i, j] = per[:, :, 0] + 0.5 * per[:, :, 2]
    w[:, j, i] = per[:, :, 1] + 0.5 * per[:, :, 2]
    return bradley_terry(w, ridge=ridge)


def ratings(battles: Any, *, rounds: int = 1000, seed: int = 0, anchor: str | None = None,
            anchor_rating: float = 1000.0, confidence: float = 0.95,
            ridge: float = DEFAULT_RIDGE, keep_samples: bool = False) -> Leaderboard:
    """Bradley-Terry ratings of the models in ``battles`` with seeded bootstrap intervals.

    ``battles``: ``(model_a, model_b, winner)`` tuples with winner ``"a"``, ``"b"`` or
    ``"tie"``, Battle records (errored ones skipped and counted), or columns / a pyarrow table
    with ``model_a``, ``model_b``, ``winner``. ``rounds`` >= 1 bootstrap rounds (1,000 or more
    for reporting). See the module docstring for anchoring, ties, the ridge and ranks. No
    battles, an unknown anchor or models not linked by battles raise InvalidArtifact."""
    if not isinstance(rounds, (int, np.integer)) or isinstance(rounds, bool) or rounds < 1:
        raise InvalidArtifact(f"rounds must be a positive integer, got {rounds!r}")
    if not 0.0 < confidence < 1.0:
        raise InvalidArtifact(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    bc = count_battles(battles)
    models, p = bc.models, len(bc.models)
    if p == 0:
        raise InvalidArtifact("no battles to rate", skipped=bc.skipped)
    if anchor is not None and anchor not in models:
        raise InvalidArtifact(f"anchor model {anchor!r} has no battles", anchor=anchor)
    w = bc.wins
    n_ij = w + w.T
    comps = _components(n_ij)
    if len(comps) > 1:
        groups = [[models[k] for k in c] for c in comps]
        raise InvalidArtifact("the models are not all linked by battles, so they cannot share "
                              f"one rating scale: {groups}", components=groups)

    iu, ju = np.triu_indices(p, 1)
    cats = bc.outcomes[iu, ju].reshape(-1)                   # (pairs * 3,)
    total = int(cats.sum())
    theta = bradley_terry(w, ridge=ridge)
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(cats)
    probs = cats[keep] / total
    per = max(1, _BLOCK_CELLS // (p * p))
    samples = []
    done = 0
    while done < rounds:
        b = min(per, rounds - done)
        draw = np.zeros((b, cats.size), dtype=np.int64)
        draw[:, keep] = rng.multinomial(total, probs, size=b)
        samples.append(_fit_rounds((iu, ju), draw, p, ridge))
        done += b
    boot = np.concatenate(samples)

    def to_elo(th: np.ndarray) -> np.ndarray:
        r = _POINTS * th + anchor_rating
        if anchor is not None:
            k = models.index(anchor)
            r = r - r[..., k:k + 1] + anchor_rating
        return r

    rating, boot_r = to_elo(theta), to_elo(boot)
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(boot_r, [tail, 1.0 - tail], axis=0)
    rank = 1 + (lower[None, :] > upper[:, None]).sum(axis=1)

    o = bc.outcomes
    wins_ = o[:, :, 0].sum(1) + o[:, :, 1].sum(0)
    losses = o[:, :, 1].sum(1) + o[:, :, 0].sum(0)
    ties = o[:, :, 2].sum(1) + o[:, :, 2].sum(0)
    order = sorted(range(p), key=lambda k: (-rating[k], models[k]))
    rows = tuple(LeaderboardRow(model=models[k], rating=float(rating[k]),
                                lower=float(lower[k]), upper=float(upper[k]), rank=int(rank[k]),
                                battles=int(wins_[k] + losses[k] + ties[k]),
                                wins=int(wins_[k]), losses=int(losses[k]), ties=int(ties[k]))
                 for k in order)
    with np.errstate(invalid="ignore", divide="ignore"):
        wr = np.where(n_ij > 0, w / np.where(n_ij > 0, n_ij, 1), np.nan)
    diff = (rating[:, None] - rating[None, :]) / SCALE
    pred = 1.0 / (1.0 + BASE ** (-diff))
    ords = np.array(order)

    def mat(m: np.ndarray, cast: Any = float) -> tuple[tuple[Any, ...], ...]:
        m = m[np.ix_(ords, ords)]
        return tuple(tuple(cast(v) for v in r) for r in m)

    separated = tuple(models[k] for k in order if wins_[k] + ties[k] == 0
                      or losses[k] + ties[k] == 0)
    return Leaderboard(rows=rows, models=tuple(models[k] for k in order), win_rate=mat(wr),
                       predicted_win_rate=mat(pred),
                       battle_counts=mat(o.sum(2) + o.sum(2).T, int),
                       battles=total, skipped=bc.skipped, rounds=int(rounds), seed=int(seed),
                       confidence=float(confidence), anchor=anchor,
                       anchor_rating=float(anchor_rating), ridge=float(ridge),
                       mle_exists=_strongly_connected(w), separated=separated,
                       samples=boot_r[:, ords] if keep_samples else None)
