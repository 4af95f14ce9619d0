"""Arena: Bradley-Terry ratings (vs scikit-learn's logistic regression as Chatbot Arena fits it,
and vs scipy.optimize on the likelihood), bootstrap intervals and ranks, battles in both
orders with a strictly parsed judge, and the PNG plots."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from demoai.errors import BackendUnavailable, ContextOverflow, InvalidArtifact
from demoai.eval.arena import Leaderboard, bradley_terry, count_battles, ratings
from demoai.eval.battles import (
    JUDGE_TEMPLATE, JUDGE_TEMPLATE_DIGEST, Battle, judge_agreement, make_judge, parse_verdict,
    parse_vote, render_judge_prompt, run_battles, template_digest,
)
from demoai.eval.plots import plot_metric_intervals, plot_ratings, plot_win_matrix
from demoai.eval.stats import summarize

LN10 = math.log(10.0)


def simulate(true: dict[str, float], n: int, seed: int = 0, tie: float = 0.15):
    """Battles from a Bradley-Terry model on the Elo scale; ties keep each side's expected
    score at its win probability, so ties-as-halves recovers the true ratings."""
    rng = np.random.default_rng(seed)
    names = list(true)
    r = np.array([true[m] for m in names])
    i = rng.integers(0, len(names), n)
    j = (i + rng.integers(1, len(names), n)) % len(names)
    p = 1.0 / (1.0 + 10 ** ((r[j] - r[i]) / 400.0))
    pt = tie * 4 * p * (1 - p)
    u = rng.random(n)
    win = np.where(u < p - pt / 2, "a", np.where(u < p + pt / 2, "tie", "b"))
    return [(names[a], names[b], w) for a, b, w in zip(i, j, win)]


def sklearn_reference(battles) -> dict[str, float]:
    """Chatbot Arena's fit: logistic regression without intercept or penalty on +-ln(10)
    columns, a decided battle weighing 2 for its winner, a tie 1 each way; 400 * coef + 1000
    (coefficients centred: the mean rating is 1000)."""
    from sklearn.linear_model import LogisticRegression
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    k = {m: i for i, m in enumerate(models)}
    weight: dict[tuple[int, int], float] = {}
    for a, b, w in battles:
        i, j = k[a], k[b]
        if w == "a":
            weight[(i, j)] = weight.get((i, j), 0) + 2
        elif w == "b":
            weight[(j, i)] = weight.get((j, i), 0) + 2
        else:
            weight[(i, j)] = weight.get((i, j), 0) + 1
            weight[(j, i)] = weight.get((j, i), 0) + 1
    X, y, sw = [], [], []
    for (i, j), wt in weight.items():
        x = np.zeros(len(models))
        x[i], x[j] = LN10, -LN10
        X.append(x)
        y.append(1 if i < j else 0)   # each row states "lower index won" or not
        if i > j:
            X[-1] = -x
        sw.append(wt)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000)
    lr.fit(np.array(X), np.array(y), sample_weight=np.array(sw))
    coef = lr.coef_[0] - lr.coef_[0].mean()
    return {m: 400 * c + 1000 for m, c in zip(models, coef)}


def scipy_reference(battles) -> dict[str, float]:
    from scipy.optimize import minimize
    bc = count_battles(battles)
    w = bc.wins
    p = len(bc.models)

    def nll(free):
        th = np.concatenate([[0.0], free])
        d = th[:, None] - th[None, :]
        return float((w * np.logaddexp(0, -d)).sum())
    res = minimize(nll, np.zeros(p - 1), method="BFGS", options={"gtol": 1e-10})
    th = np.concatenate([[0.0], res.x])
    th -= th.mean()
    return {m: 400 / LN10 * t + 1000 for m, t in zip(bc.models, th)}


TRUE = {"alpha": 1180.0, "bravo": 1100.0, "charlie": 1040.0, "delta": 1000.0, "echo": 930.0,
        "foxtrot": 750.0}


@pytest.fixture(scope="module")
def battles():
    return simulate(TRUE, 6000, seed=1)


@pytest.fixture(scope="module")
def board(battles):
    return ratings(battles, rounds=1000, seed=0)


def test_ratings_match_sklearn_logistic_regression(battles, board):
    ref = sklearn_reference(battles)
    for r in board.rows:
        assert r.rating == pytest.approx(ref[r.model], abs=0.5)
    assert np.mean([r.rating for r in board.rows]) == pytest.approx(1000.0, abs=1e-6)


def test_ratings_match_scipy_maximum_likelihood(battles, board):
    ref = scipy_reference(battles)
    for r in board.rows:
        assert r.rating == pytest.approx(ref[r.model], abs=0.01)


def test_ratings_recover_true_strengths_within_their_intervals(board):
    assert [r.model for r in board.rows] == list(TRUE)        # best first
    inside = sum(r.lower <= TRUE[r.model] <= r.upper for r in board.rows)
    assert inside >= 5
    assert all(r.lower < r.rating < r.upper for r in board.rows)


def test_ratings_do_not_depend_on_battle_order_or_position(battles, board):
    rng = np.random.default_rng(3)
    shuffled = [battles[k] for k in rng.permutation(len(battles))]
    flip = {"a": "b", "b": "a", "tie": "tie"}
    swapped = [(b, a, flip[w]) if k % 2 else (a, b, w) for k, (a, b, w) in enumerate(shuffled)]
    other = ratings(swapped, rounds=1000, seed=0)
    assert other.to_dict() == board.to_dict()


def test_bootstrap_is_seeded_and_matches_resampling_the_battles(battles, board):
    again = ratings(battles, rounds=1000, seed=0)
    assert again.to_dict() == board.to_dict()
    other = ratings(battles, rounds=1000, seed=1)
    assert [r.lower for r in other.rows] != [r.lower for r in board.rows]
    # Reference: resample battle rows with replacement and refit each round.
    bc = count_battles(battles)
    k = {m: i for i, m in enumerate(bc.models)}
    code = np.array([(k[a], k[b], {"a": 0, "b": 1, "tie": 2}[w]) for a, b, w in battles])
    rng = np.random.default_rng(99)
    p = len(bc.models)
    ws = np.zeros((600, p, p))
    for r in range(600):
        c = code[rng.integers(0, len(code), len(code))]
        tie = np.where(c[:, 2] == 2, 0.5, 0.0)
        np.add.at(ws[r], (c[:, 0], c[:, 1]), np.where(c[:, 2] == 0, 1.0, tie))
        np.add.at(ws[r], (c[:, 1], c[:, 0]), np.where(c[:, 2] == 1, 1.0, tie))
    elo = 400 / LN10 * bradley_terry(ws) + 1000
    lo, hi = np.quantile(elo, [0.025, 0.975], axis=0)
    for r in board.rows:
        width = r.upper - r.lower
        assert abs(r.lower - lo[k[r.model]]) < 0.15 * width
        assert abs(r.upper - hi[k[r.model]]) < 0.15 * width


def test_ranks_as_chatbot_arena_computes_them():
    rng = np.random.default_rng(5)
    bt = []
    for _ in range(300):                      # top beats everyone 90% of the time
        for other in ("mid1", "mid2", "low"):
            bt.append(("top", other, "a" if rng.random() < 0.9 else "b"))
        bt.append(("mid1", "mid2", "a" if rng.random() < 0.5 else "b"))
        bt.append(("mid1", "low", "a" if rng.random() < 0.9 else "b"))
        bt.append(("mid2", "low", "a" if rng.random() < 0.9 else "b"))
    lb = ratings(bt, rounds=500)
    ranks = {r.model: r.rank for r in lb.rows}
    assert ranks == {"top": 1, "mid1": 2, "mid2": 2, "low": 4}


def test_two_models_have_the_closed_form_solution_and_ties_count_half():
    bt = [("x", "y", "a")] * 30 + [("y", "x", "a")] * 10 + [("x", "y", "tie")] * 5
    lb = ratings(bt, rounds=200)
    x, y = lb.row("x"), lb.row("y")
    assert x.rating - y.rating == pytest.approx(400 * math.log10(32.5 / 12.5), abs=0.01)
    assert (x.wins, x.losses, x.ties, x.battles) == (30, 10, 5, 45)
    assert lb.win_rate[0][1] == pytest.approx(32.5 / 45)
    assert lb.predicted_win_rate[0][1] == pytest.approx(32.5 / 45, abs=1e-5)
    assert lb.battle_counts[0][1] == lb.battle_counts[1][0] == 45
    assert math.isnan(lb.win_rate[0][0])
    ties = ratings([("x", "y", "tie")] * 4, rounds=50)
    halves = ratings([("x", "y", "a"), ("x", "y", "b")] * 2, rounds=50)
    assert ties.row("x").rating == pytest.approx(1000.0) == halves.row("x").rating


def test_anchor_fixes_a_model_and_keeps_the_differences(battles, board):
    lb = ratings(battles, rounds=300, anchor="delta", anchor_rating=1100.0)
    d = lb.row("delta")
    assert d.rating == d.lower == d.upper == pytest.approx(1100.0)
    for r in board.rows:
        shift = r.rating - board.row("delta").rating
        assert lb.row(r.model).rating - 1100.0 == pytest.approx(shift)
    with pytest.raises(InvalidArtifact, match="anchor"):
        ratings(battles, rounds=10, anchor="nobody")


def test_undefeated_model_stays_finite_and_is_flagged():
    bt = [("champ", "b", "a")] * 10 + [("champ", "c", "a")] * 10 + \
         [("b", "c", "a")] * 6 + [("b", "c", "b")] * 4
    lb = ratings(bt, rounds=200)
    assert not lb.mle_exists and lb.separated == ("champ",)
    champ = lb.row("champ")
    assert math.isfinite(champ.rating) and champ.rating > lb.row("b").rating + 400
    assert lb.rows[0].model == "champ"
    assert ratings(simulate(TRUE, 600), rounds=10).mle_exists


def test_bad_battles_raise_typed_errors():
    with pytest.raises(InvalidArtifact, match="not all linked"):
        ratings([("a", "b", "a"), ("a", "b", "b"), ("c", "d", "tie")], rounds=10)
    with pytest.raises(InvalidArtifact, match="no battles"):
        ratings([], rounds=10)
    with pytest.raises(InvalidArtifact, match="winner"):
        ratings([("a", "b", "draw")], rounds=10)
    with pytest.raises(InvalidArtifact, match="itself"):
        ratings([("a", "a", "tie")], rounds=10)
    with pytest.raises(InvalidArtifact):
        ratings([("a", "b")], rounds=10)
    with pytest.raises(InvalidArtifact, match="rounds"):
        ratings([("a", "b", "a")], rounds=0)
    with pytest.raises(InvalidArtifact, match="differ in length"):
        ratings({"model_a": ["a", "a"], "model_b": ["b"], "winner": ["a", "b"]}, rounds=10)


def test_column_forms_aliases_and_errored_records():
    import pyarrow as pa
    bt = simulate(TRUE, 800, seed=4)
    base = ratings(bt, rounds=100)
    cols = {"model_a": [a for a, _, _ in bt], "model_b": [b for _, b, _ in bt],
            "winner": [{"a": "model_a", "b": "model_b", "tie": "tie (bothbad)"}[w]
                       for _, _, w in bt]}
    assert ratings(cols, rounds=100).to_dict() == base.to_dict()
    assert ratings(pa.table(cols), rounds=100).to_dict() == base.to_dict()
    recs = [Battle(0, "p", a, b, "x", "y", w, "judge") for a, b, w in bt]
    recs.append(Battle(0, "p", "alpha", "bravo", "x", "y", None, "judge", raw="??",
                       error="off-format judge answer"))
    lb = ratings(recs, rounds=100)
    assert lb.skipped == 1 and lb.battles == 800
    assert [r.rating for r in lb.rows] == [r.rating for r in base.rows]


def test_leaderboard_json_round_trip(board):
    d = json.loads(json.dumps(board.to_dict()))
    assert d["rows"][0]["rank"] == 1 and d["win_rate"][0][0] is None
    assert Leaderboard.from_dict(d).to_dict() == d
    with pytest.raises(InvalidArtifact):
        Leaderboard.from_dict({"rows": []})


def test_ratings_of_20k_battles_with_1000_rounds_is_fast():
    true = {f"m{k}": 800 + 45 * k for k in range(10)}
    bt = simulate(true, 20_000, seed=2)
    t = time.perf_counter()
    lb = ratings(bt, rounds=1000)
    assert time.perf_counter() - t < 2.0
    assert lb.rows[0].model == "m9" and lb.rounds == 1000


# -- battles ---------------------------------------------------------------------------------

QUALITY = {"small": 1, "medium": 2, "large": 3}


def _generate(calls):
    def generate(model: str, prompt: str) -> str:
        calls.append((model, prompt))
        return f"{prompt} " + "detail " * QUALITY[model]
    return generate


def _longer_wins(prompt: str, a: str, b: str) -> str:
    verdict = "[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "[[C]]"
    return f"Comparing the two answers, one has more detail.\n{verdict}"


def test_run_battles_covers_every_pair_in_both_orders():
    calls: list = []
    prompts = ["q1", "q2", "q3"]
    progress: list = []
    bt = run_battles(list(QUALITY), prompts, _generate(calls), judge=_longer_wins, seed=1,
                     on_progress=lambda d, t: progress.append((d, t)))
    assert len(bt) == 3 * 3 * 2 and progress[-1] == (18, 18)
    seen = {(b.prompt_index, b.model_a, b.model_b) for b in bt}
    assert len(seen) == 18
    for b in bt:
        assert (b.prompt_index, b.model_b, b.model_a) in seen
        assert b.template_digest == JUDGE_TEMPLATE_DIGEST and b.judge == "judge"
        assert b.winner_model == max((b.model_a, b.model_b), key=QUALITY.get)
    assert sorted(calls) == sorted({(m, p) for m in QUALITY for p in prompts})
    lb = ratings(bt, rounds=200)
    assert [r.model for r in lb.rows] == ["large", "medium", "small"]
    assert [b.id for b in run_battles(list(QUALITY), prompts, _generate([]), judge=_longer_wins,
                                      seed=1)] == [b.id for b in bt]
    assert [b.id for b in run_battles(list(QUALITY), prompts, _generate([]), judge=_longer_wins,
                                      seed=2)] != [b.id for b in bt]


def test_both_orders_cancel_a_position_biased_judge():
    bt = run_battles(list(QUALITY), ["q1", "q2"], _generate([]),
                     judge=lambda p, a, b: "I always like the first one.\n[[A]]")
    lb = ratings(bt, rounds=100)
    assert all(r.rating == pytest.approx(1000.0) for r in lb.rows)
    agree = judge_agreement(bt)
    assert agree["position_a_share"] == 1.0 and agree["pairs"] == 6 and agree["consistent"] == 0
    fair = judge_agreement(run_battles(list(QUALITY), ["q1"], _generate([]), judge=_longer_wins))
    assert fair["position_a_share"] == 0.5 and fair["consistent"] == fair["pairs"] == 3


def test_off_format_judge_answers_are_errored_never_ties():
    answers = iter(["[[A]]", "A is better", "[[A]] no wait [[B]]", "[[C]]\nthanks!",
                    "Final verdict: [[C]]", "[[b]]"])
    bt = run_battles(["m1", "m2"], ["q"] * 3, lambda m, p: m, judge=lambda p, a, b: next(answers))
    by_raw = {b.raw: b for b in bt}
    assert by_raw["[[A]]"].winner == "a" and by_raw["Final verdict: [[C]]"].winner == "tie"
    for raw in ("A is better", "[[A]] no wait [[B]]", "[[C]]\nthanks!", "[[b]]"):
        b = by_raw[raw]
        assert b.winner is None and b.error.startswith("off-format judge answer")
    lb = ratings(bt, rounds=20)
    assert lb.skipped == 4 and lb.battles == 2
    assert judge_agreement(bt)["errored"] == 4


def test_parse_verdict_and_vote_rules():
    assert parse_verdict("Reasoning...\n\n[[B]]\n") == "b"
    assert parse_verdict("[[A]] is my pick. Verdict: [[A]]") == "a"
    for bad in ("", "no verdict", "[[A]]\n[[C]]", "[[A]]\nmore words", "[[D]]", "[A]"):
        with pytest.raises(InvalidArtifact):
            parse_verdict(bad)
    assert parse_vote(" A ") == "a" and parse_vote("Tie") == "tie" and parse_vote("c") == "tie"
    with pytest.raises(InvalidArtifact):
        parse_vote("maybe")


def test_human_votes_and_model_failures():
    votes = iter(["a", "maybe", "tie", "B"])
    bt = run_battles(["m1", "m2"], ["q1", "q2"], lambda m, p: f"{m}:{p}",
                     human=lambda p, a, b: next(votes), seed=0)
    assert [b.winner for b in bt].count(None) == 1
    assert all(b.judge == "human" and b.template_digest is None for b in bt)

    def flaky(model: str, prompt: str) -> str:
        if model == "m2" and prompt == "long":
            raise ContextOverflow("prompt longer than the context")
        return "ok"
    judged = []
    bt = run_battles(["m1", "m2"], ["short", "long"], flaky,
                     judge=lambda p, a, b: judged.append(p) or "[[C]]")
    failed = [b for b in bt if b.error]
    assert len(failed) == 2 and all("ContextOverflow" in b.error for b in failed)
    assert judged == ["short", "short"]

    def down(model: str, prompt: str) -> str:
        raise BackendUnavailable("no server")
    with pytest.raises(BackendUnavailable):
        run_battles(["m1", "m2"], ["q"], down, judge=_longer_wins)


def test_run_battles_checks_its_arguments():
    gen = _generate([])
    for kw in ({}, {"judge": _longer_wins, "human": lambda p, a, b: "a"}):
        with pytest.raises(InvalidArtifact, match="exactly one"):
            run_battles(["small", "large"], ["q"], gen, **kw)
    with pytest.raises(InvalidArtifact, match="twice"):
        run_battles(["small", "small"], ["q"], gen, judge=_longer_wins)
    with pytest.raises(InvalidArtifact, match="two models"):
        run_battles(["small"], ["q"], gen, judge=_longer_wins)
    with pytest.raises(InvalidArtifact, match="prompt"):
        run_battles(["small", "large"], [], gen, judge=_longer_wins)


def test_judge_template_rendering_and_record_round_trip():
    text = render_judge_prompt("What is {x}?", "{answer_b} is {}", "B's answer")
    assert "What is {x}?" in text and "{answer_b} is {}" in text and "B's answer" in text
    assert "{question}" not in text
    seen = []
    custom = "Q={question} A={answer_a} B={answer_b}"
    judge = make_judge(lambda t: seen.append(t) or "[[A]]", template=custom)
    assert judge("q", "x", "y") == "[[A]]" and seen == ["Q=q A=x B=y"]
    bt = run_battles(["m1", "m2"], ["q"], lambda m, p: m, judge=judge, judge_template=custom)
    assert bt[0].template_digest == template_digest(custom) != JUDGE_TEMPLATE_DIGEST
    assert template_digest(JUDGE_TEMPLATE) == JUDGE_TEMPLATE_DIGEST.lower()
    assert JUDGE_TEMPLATE_DIGEST.startswith("blake3:")
    d = json.loads(json.dumps(bt[0].to_dict()))
    assert d["id"] == bt[0].id and Battle.from_dict(d) == bt[0]


# -- plots -----------------------------------------------------------------------------------

def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    img = mpimg.imread(path)                         # decodes the whole image
    assert img.shape[:2] == (h, w) and img.std() > 0  # something was drawn
    return w, h


def test_plots_write_valid_pngs_of_the_requested_size(board, tmp_path):
    assert _png_size(plot_ratings(board, tmp_path / "r.png")) == (800, 110 + 30 * 6)
    assert _png_size(plot_ratings(board.to_dict(), tmp_path / "sub" / "r2.png",
                                  size=(640, 480))) == (640, 480)
    w, h = _png_size(plot_win_matrix(board, tmp_path / "w.png"))
    assert w > h > 300
    assert _png_size(plot_win_matrix(board, tmp_path / "p.png", predicted=True,
                                     size=(500, 400))) == (500, 400)
    est = summarize([0.1, 0.5, 0.9, 0.7])
    rows = [("exact_match", est), ("f1", 0.6, 0.5, 0.7),
            {"label": "rougeL", "value": 0.4, "lower": 0.3, "upper": 0.45}]
    out = plot_metric_intervals(rows, tmp_path / "m.png", size=(700, 300))
    assert _png_size(out) == (700, 300)
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(InvalidArtifact):
        plot_metric_intervals([("x", 1.0)], tmp_path / "bad.png")
    with pytest.raises(InvalidArtifact):
        plot_metric_intervals([], tmp_path / "bad.png")
