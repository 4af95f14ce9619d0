"""Evaluation verbs for the faces: ``eval run`` (evaluate and commit the result), ``eval
list`` (the leaderboard at a revision), ``eval show``, ``eval compare``, ``eval gate``,
``eval test`` (sanity suites as unit tests), ``eval bench``, and the arena.

Each evaluation ends in a commit of its record at ``evals/<suite>/<model>.eval.json`` (only
that path: whatever else is staged stays staged), with the model, adapter, dataset, suite
and prompt digests in the commit's lineage. A result identical to the one at HEAD is not
committed again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demoai.engines.llm import ModelPool
from demoai.errors import InvalidArtifact, NothingToCommit, PathNotFound, RefNotFound
from demoai.eval.compare import Comparison, compare_results
from demoai.eval.gate import GateRun, Side, gate_path
from demoai.eval.gate import run_gate as _run_gate
from demoai.eval.junit import SuiteReport, format_report, junit_xml
from demoai.eval.junit import exit_code as suite_exit_code
from demoai.eval.run import EvalOutcome, OnProgress, evaluate
from demoai.eval.sanity import test_suites
from demoai.objects import EvalResult
from demoai.porcelain.commit import commit
from demoai.store.git.repo import Repository, normalize_path
from demoai.store.kinds import materialize

__all__ = ["run_eval", "EvalRun", "list_evals", "LeaderboardRow", "show_eval", "EvalView",
           "load_eval", "ModelPool", "compare_evals", "Comparison", "run_gate", "GateResult", "Side",
           "commit_record", "test_suites", "SuiteReport", "junit_xml", "format_report",
           "suite_exit_code", "arena_run", "ArenaRun", "arena_show", "bench_model",
           "repo_path"]


@dataclass
class EvalRun:
    """An ``eval run``: the outcome, the commit made (None when HEAD already had this exact
    result, or with ``commit=False``)."""

    outcome: EvalOutcome
    commit: str | None
    up_to_date: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.outcome.to_dict(), "commit": self.commit, "up_to_date": self.up_to_date}


def _lineage_inputs(res: EvalResult) -> dict[str, str]:
    out = {"model": res.model, "suite": res.suite}
    for k in ("adapter", "dataset"):
        if getattr(res, k):
            out[k] = getattr(res, k)
    if res.pins.get("prompt"):
        out["prompt"] = res.pins["prompt"]
    return out


def repo_path(repo: Repository, path: str) -> str:
    """A path as the user typed it (relative to the current folder, or absolute) as a path
    in the repository, when it names a file inside the work tree; else as given (a path
    committed at some revision)."""
    import os
    from pathlib import Path
    p = Path(os.path.abspath(path))
    try:
        rel = p.relative_to(repo.root.resolve())
    except ValueError:
        return path
    return rel.as_posix() if (p.exists() or not Path(path).is_absolute()) else path


def commit_record(repo: Repository, art: Any, path: str, message: str, *,
                  inputs: dict[str, str], parameters: dict[str, Any]) -> tuple[str | None, bool]:
    """Write ``art`` at ``path`` in the working tree and commit that path alone:
    (commit id, False), or (None, True) when HEAD already holds the same record there."""
    try:
        if repo.artifact_at("HEAD", path).digest == art.digest:
            if not repo.workpath(path).exists():
                materialize(repo, art, repo.workpath(path))
            return None, True
    except (PathNotFound, RefNotFound):
        pass
    out = repo.workpath(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    materialize(repo, art, out)
    try:
        return commit(repo, message, paths=[out], inputs=inputs, parameters=parameters), False
    except NothingToCommit:
        return None, True


def run_eval(repo: Repository, suite: str, *, model: str | None = None, adapter: str | None = None,
             rev: str | None = None, limit: int | None = None, force: bool = False,
             do_commit: bool = True, message: str | None = None, on_progress: OnProgress = None,
             pool: ModelPool | None = None, rounds: int = 1000,
             backend: str | None = None, base_url: str | None = None,
             timeout: float | None = None) -> EvalRun:
    """Evaluate and commit (see :func:`demoai.eval.run.evaluate` for the arguments;
    ``backend`` picks llamacpp/transformers/openai/vllm instead of the model's default;
    ``base_url`` (and ``timeout``) reach an OpenAI-compatible endpoint: ``model`` is then
    ``openai:NAME``)."""
    options: dict[str, Any] = {}
    if backend:
        options["name"] = backend
    if base_url:
        options["base_url"] = base_url
    if timeout:
        options["timeout"] = timeout
    outcome = evaluate(repo, repo_path(repo, suite), model=model, adapter=adapter, rev=rev, limit=limit, force=force,
                       pool=pool, on_progress=on_progress, rounds=rounds, backend=options or None)
    res = outcome.result
    if not do_commit:
        return EvalRun(outcome, None, False)
    scores = ", ".join(f"{k} {v['value']:.4g}" for k, v in sorted(res.scores.items()))
    msg = message or f"eval {res.suite_name} on {outcome.result.model_ref}: {scores or 'no scores'}"
    new, same = commit_record(repo, res, outcome.path, msg, inputs=_lineage_inputs(res),
                              parameters={"suite": res.suite_path, "model": res.model_ref,
                                          "predictions_key": outcome.key,
                                          "cached": outcome.cached})
    return EvalRun(outcome, new, same)


def load_eval(repo: Repository, spec: str) -> tuple[EvalResult, str, str]:
    """The EvalResult ``spec`` names: ``[REV:]PATH`` of an ``.eval.json`` (REV default HEAD).
    Returns (result, commit, path)."""
    rev, sep, path = spec.rpartition(":") if ":" in spec else ("HEAD", "", spec)
    rev = rev or "HEAD"
    norm = normalize_path(path)
    commit_id = repo.resolve(rev)
    try:
        art = repo.artifact_at(commit_id, norm)
    except PathNotFound:
        raise PathNotFound(f"no evaluation result at {norm} in {rev}", path=norm) from None
    if not isinstance(art, EvalResult):
        raise InvalidArtifact(f"{norm} at {rev} is a {art.kind}, not an evaluation result", path=norm)
    return art, commit_id, norm


@dataclass
class LeaderboardRow:
    """One model on one suite at a revision."""

    suite: str
    model: str
    path: str
    scores: dict[str, dict[str, Any]]
    counts: dict[str, int]
    digest: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


def list_evals(repo: Repository, rev: str = "HEAD") -> list[LeaderboardRow]:
    """Every evaluation result in the tree at ``rev``: a leaderboard of models x suites."""
    commit_id = repo.resolve(rev)
    rows = []
    for path, art in sorted(repo.artifacts(commit_id).items()):
        if isinstance(art, EvalResult):
            order = [m["name"] for m in art.pins.get("metrics") or []]
            scores = {k: art.scores[k] for k in sorted(art.scores, key=lambda k: (
                order.index(k) if k in order else len(order), k))}
            rows.append(LeaderboardRow(art.suite_name, art.model_ref + (" + adapter" if art.adapter else ""),
                                       path, scores, art.counts, art.digest))
    return rows


@dataclass
class EvalView:
    """An evaluation result and a page of its per-example predictions."""

    result: EvalResult
    commit: str
    path: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"path": self.path, "commit": self.commit, "result": self.result.to_manifest(),
                "examples": self.examples}


def show_eval(repo: Repository, spec: str, *, examples: int = 5, failed: bool = False) -> EvalView:
    """The result at ``[REV:]PATH`` with up to ``examples`` predictions (``failed``: only
    errored ones and those scoring below 1 on the first metric)."""
    res, commit_id, path = load_eval(repo, spec)
    view = EvalView(res, commit_id, path)
    if examples and res.predictions:
        from demoai.store.tables import TableRef
        table = repo.tables.read(TableRef.from_dict(res.predictions))
        first = next(iter(res.scores), None)
        for row in table.to_pylist():
            if failed and row.get("error") is None and first is not None \
                    and (row.get(f"score:{first}") or 0.0) >= 1.0:
                continue
            view.examples.append({k: v for k, v in row.items() if v is not None and k != "record"})
            if len(view.examples) >= examples:
                break
    return view


def compare_evals(repo: Repository, a: str, b: str, *, metrics: list[str] | None = None,
                  seed: int = 0, rounds: int = 1000) -> Comparison:
    """Compare the results ``a`` (base) and ``b`` (candidate), each ``[REV:]PATH``."""
    ra, _, _ = load_eval(repo, a)
    rb, _, _ = load_eval(repo, b)
    return compare_results(repo, ra, rb, metrics=metrics, seed=seed, rounds=rounds)


@dataclass
class GateResult:
    """A gate's run and the commit of its record (None with ``do_commit=False``)."""

    run: GateRun
    path: str
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.run.to_dict(), "path": self.path, "commit": self.commit}


def run_gate(repo: Repository, suite: str, base: Side, candidate: Side, *, metric: str | None = None,
             margin: float = 0.0, alpha: float = 0.05, limit: int | None = None,
             do_commit: bool = True, on_progress: OnProgress = None, rounds: int = 1000) -> GateResult:
    """Evaluate base and candidate on ``suite`` and commit the gate's decision."""
    run = _run_gate(repo, repo_path(repo, suite), base, candidate, metric=metric, margin=margin, alpha=alpha,
                    limit=limit, on_progress=on_progress, rounds=rounds)
    path = gate_path(run.base.result.suite_name, base, candidate)
    new = None
    if do_commit:
        rec = run.record
        new, _ = commit_record(
            repo, rec, path, f"gate {rec.metric} on {run.base.result.suite_name}: {rec.outcome} "
            f"({base.label()} -> {candidate.label()})",
            inputs={"base": rec.base, "candidate": rec.candidate},
            parameters={"metric": rec.metric, "margin": rec.margin, "alpha": rec.alpha})
    return GateResult(run, path, new)


@dataclass
class ArenaRun:
    """An arena: its record, the leaderboard, where it was committed and the plot."""

    record: Any
    leaderboard: Any
    path: str
    plot: str | None
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"path": self.path, "commit": self.commit, "plot": self.plot,
                "leaderboard": self.leaderboard.to_dict(), "counts": self.record.counts,
                "digest": self.record.digest}


def _arena_plot(repo: Repository, path: str, board: Any) -> str:
    from demoai.eval.plots import plot_ratings
    png = path.removesuffix(".arena.json") + ".ratings.png"
    plot_ratings(board, repo.workpath(png), title=f"{path}: ratings with 95% intervals")
    return png


def arena_run(repo: Repository, models: list[str], prompts: str, *, name: str = "arena",
              judge: str | None = None, human: Any = None, column: str = "prompt",
              limit: int | None = None, seed: int = 0, rounds: int = 1000, do_commit: bool = True,
              on_progress: OnProgress = None) -> ArenaRun:
    """Run an arena (see :func:`demoai.eval.arena_run.run_arena`), commit its record at
    ``evals/arena/<name>.arena.json`` and draw the ratings next to it (a PNG)."""
    from demoai.eval.arena_run import run_arena
    from demoai.eval.run import model_slug
    record, board, _ = run_arena(repo, models, prompts, name=name, judge=judge, human=human,
                                 column=column, limit=limit, seed=seed, rounds=rounds,
                                 on_progress=on_progress)
    path = f"evals/arena/{model_slug(name)}.arena.json"
    new = None
    if do_commit:
        top = ", ".join(f"{r.model} {r.rating:.0f}" for r in board.rows[:3])
        new, _ = commit_record(repo, record, path, f"arena {name}: {top}",
                               inputs={"prompts": record.prompts, **{f"model:{m}": d for m, d in record.models.items() if d}},
                               parameters={"models": models, "judge": judge, "human": human is not None})
    plot = _arena_plot(repo, path, board)
    return ArenaRun(record, board, path, plot, new)


def arena_show(repo: Repository, spec: str) -> ArenaRun:
    """The arena at ``[REV:]PATH`` (an ``.arena.json``), its plot redrawn beside it."""
    from demoai.eval.arena import Leaderboard
    from demoai.objects import ArenaResult
    rev, _, path = spec.rpartition(":") if ":" in spec else ("HEAD", "", spec)
    norm = normalize_path(path)
    art = repo.artifact_at(rev or "HEAD", norm)
    if not isinstance(art, ArenaResult):
        raise InvalidArtifact(f"{norm} is a {art.kind}, not an arena", path=norm)
    board = Leaderboard.from_dict(art.leaderboard)
    return ArenaRun(art, board, norm, _arena_plot(repo, norm, board), None)


def bench_model(repo: Repository, model: str = "smollm2", *, adapter: str | None = None,
                backend: str | None = None, n_prompt: int = 512, n_gen: int = 128,
                repetitions: int = 3, rev: str | None = None) -> dict[str, Any]:
    """Prompt-processing and generation speed of a model alone, as llama-bench measures
    them (``pp<n_prompt>``, ``tg<n_gen>``): tokens/s with mean and spread over
    ``repetitions``, time to first token, the backend and the hardware."""
    from demoai.engines.llm import open_backend
    from demoai.engines.llm.bench import bench_backend
    from demoai.registry.resolve import resolve_model, split_model_id
    base, plus = split_model_id(model)
    spec = resolve_model(repo, base, rev, {"name": backend} if backend else None, adapter or plus)
    with open_backend(spec) as b:
        out = bench_backend(b, n_prompt=n_prompt, n_gen=n_gen, repetitions=repetitions)
    out["model"] = model
    from demoai.store.git.lineage import environment
    out["hardware"] = {**environment()["host"], **(out.get("hardware") or {})}
    return out
