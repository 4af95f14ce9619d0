"""``demoai eval``: run suites, list and show results, compare, gate, sanity tests, bench;
``demoai arena``: pairwise battles and ratings."""
from __future__ import annotations

import time
from typing import Any

import click

from demoai import porcelain as P
from demoai.cli.common import err, esc, handle_errors, json_option, open_repo, out, print_json

__all__ = ["eval_group", "arena_group", "print_leaderboard", "EvalBar", "print_scores", "print_eval_diff", "print_comparison"]


class EvalBar:
    """A progress line for long evaluations: items done, examples/s and ETA (stderr, only
    on a terminal)."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.enabled = enabled and err.is_terminal
        self.label, self.task, self.progress = label, None, None
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(),
                                     console=err.get(), transient=True)
        self.t0 = time.perf_counter()
        self.first: int | None = None

    def __enter__(self) -> "EvalBar":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.first is None:
            self.first, self.t0 = done, time.perf_counter()
        dt = time.perf_counter() - self.t0
        rate = f"{(done - self.first) / dt:.2f} ex/s" if dt > 0 and done > self.first else ""
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=total, rate=rate)
        self.progress.update(self.task, completed=done, total=total, rate=rate)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def print_scores(scores: dict[str, dict[str, Any]], title: str | None = None) -> None:
    """A table of metric, value, 95% interval, standard error and items."""
    from rich.table import Table
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in ("metric", "value", "95% CI", "stderr", "n"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for name, s in scores.items():
        ci = s.get("ci") or [None, None]
        t.add_row(name, _num(s["value"]), f"[{_num(ci[0])}, {_num(ci[1])}]", _num(s.get("stderr")),
                  str(s.get("n", "")))
    out.print(t)


def _perf_line(perf: dict[str, Any]) -> str:
    lat = perf.get("latency_ms") or {}
    parts = [f"{perf.get('examples_per_s') or 0:.2f} examples/s"]
    if lat.get("p50") is not None:
        parts.append(f"latency p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms")
    if perf.get("completion_tokens_per_s"):
        parts.append(f"{perf['completion_tokens_per_s']:.1f} generated tokens/s")
    if perf.get("prompt_tokens_per_s"):
        parts.append(f"{perf['prompt_tokens_per_s']:.0f} prompt tokens/s")
    if perf.get("peak_rss_bytes"):
        parts.append(f"peak RSS {perf['peak_rss_bytes'] / 1e6:.0f} MB")
    return "; ".join(parts)


def _p(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}"


def print_comparison(rows: list[dict[str, Any]], inputs_changed: list[str]) -> None:
    """Per metric: base -> candidate, the paired difference with its 95% interval and
    p-value, McNemar's p for pass/fail metrics, and the flipped examples."""
    from rich.table import Table
    t = Table(show_edge=False, pad_edge=False)
    for c in ("metric", "base", "cand.", "delta [95% CI]", "p", "McNemar p", "flips", "n"):
        t.add_column(c)
    flipped = []
    for r in rows:
        bs, mn, fl = r.get("bootstrap") or {}, r.get("mcnemar") or {}, r.get("flips") or {}
        delta = (f"{bs['delta']:+.4g} [{bs['lower']:+.3g}, {bs['upper']:+.3g}]" if bs else "-")
        nf = f"-{len(fl.get('pass_to_fail', []))} +{len(fl.get('fail_to_pass', []))}" if fl else "-"
        t.add_row(r["metric"], _num(r.get("base")), _num(r.get("candidate")), delta,
                  _p(bs.get("p_value")), _p(mn.get("p_value")), nf, str(r.get("n_shared", "")))
        if fl.get("pass_to_fail") or fl.get("fail_to_pass"):
            flipped.append((r["metric"], fl))
    out.print(t)
    for m, fl in flipped[:3]:
        out.print(f"  {m}: pass->fail {', '.join(map(str, fl['pass_to_fail'][:10])) or '-'}; "
                  f"fail->pass {', '.join(map(str, fl['fail_to_pass'][:10])) or '-'}", markup=False)
    if inputs_changed:
        out.print("  inputs that differ: " + ", ".join(inputs_changed), markup=False)


def print_eval_diff(d: dict[str, Any]) -> None:
    """``demoai diff`` of an evaluation result: deltas with paired tests and flips."""
    paired = d.get("paired") or {}
    rows = [{"metric": m, "base": v.get("old"), "candidate": v.get("new"), **(paired.get(m) or {})}
            for m, v in d["metrics"].items()]
    print_comparison(rows, d.get("inputs_changed") or [])


def _exit_error(e: Any, as_json: bool) -> None:
    """Report a typed error (one JSON line on stderr with --json) and exit 2: for the
    commands whose status 1 means a failed case or gate."""
    import sys
    if as_json:
        from demoai.cli.common import error_json
        d = e.to_dict()
        click.echo(error_json(d["code"], d["message"], d["fields"]), err=True)
    else:
        err.print(f"[red]error:[/red] {esc(e.message)}")
    sys.exit(2)


@click.group("eval")
def eval_group() -> None:
    """Evaluate models on suites; every result is a commit.

    \b
    Examples:
      demoai eval run evals/arith.suite.yaml --model smollm2
      demoai eval list
      demoai eval show evals/arithmetic/smollm2.eval.json --failed
    """


@eval_group.command("run")
@click.argument("suite")
@click.option("--model", "-m", help="Model: a model path in the tree, `smollm2` (embedded), or "
              "openai:NAME (default: the suite's `model:`, else smollm2).")
@click.option("--adapter", help="A LoRA adapter path in the tree, applied to the model.")
@click.option("--backend", type=click.Choice(["llamacpp", "transformers", "openai", "vllm"]),
              help="Backend to run the model on (default: llamacpp for GGUF, else transformers).")
@click.option("--base-url", help="An OpenAI-compatible endpoint (with --model openai:NAME).")
@click.option("--rev", help="Evaluate the suite, data, prompt and model as committed at REV "
              "(default: the working-tree suite, data and model at HEAD).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N examples.")
@click.option("--force", is_flag=True, help="Run the model even when stored predictions match.")
@click.option("--no-commit", is_flag=True, help="Score and print, but commit nothing.")
@click.option("-M", "--message", help="Commit message (default: suite, model and scores).")
@json_option
@handle_errors
def eval_run(suite: str, model: str | None, adapter: str | None, backend: str | None,
             base_url: str | None, rev: str | None, limit: int | None,
             force: bool, no_commit: bool, message: str | None, as_json: bool) -> None:
    """Evaluate a model on SUITE (a *.suite.yaml) and commit the result.

    Predictions are cached by everything that fixes them: an unchanged re-run reuses them
    (and says so), a change of metrics only re-scores, and a killed run resumes.
    """
    repo = open_repo()
    with EvalBar(f"eval {suite}", enabled=not as_json) as bar:
        run = P.evaluate.run_eval(repo, suite, model=model, adapter=adapter, rev=rev, limit=limit,
                                  force=force, do_commit=not no_commit, message=message,
                                  on_progress=bar, backend=backend, base_url=base_url)
    if as_json:
        print_json(run.to_dict())
        return
    o, res = run.outcome, run.outcome.result
    print_scores(res.scores, title=f"{res.suite_name} · {res.model_ref} ({res.counts['examples']} examples"
                 + (f", {res.counts['errored']} errored" if res.counts.get("errored") else "") + ")")
    if o.cached:
        out.print("cached: the stored predictions were reused (the model was not called)")
    elif o.resumed:
        out.print(f"resumed: {o.resumed} examples came from the interrupted run")
    if res.perf:
        out.print(("speed (of the run that made the predictions): " if o.cached else "speed: ")
                  + _perf_line(res.perf))
    if run.commit:
        out.print(f"committed {o.path} as {run.commit[:12]}")
    elif run.up_to_date:
        out.print(f"{o.path} is up to date at HEAD (nothing committed)")
    else:
        out.print("not committed (--no-commit)")


@eval_group.command("list")
@click.option("--rev", default="HEAD", show_default=True, help="The revision to list.")
@json_option
@handle_errors
def eval_list(rev: str, as_json: bool) -> None:
    """The leaderboard: every evaluation result at REV, models x suites."""
    rows = P.evaluate.list_evals(open_repo(), rev)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        out.print(f"no evaluation results at {rev} (run `demoai eval run SUITE`)")
        return
    from rich.table import Table
    # models x suites: each cell the suite's first metric with its interval
    suites = list(dict.fromkeys(r.suite for r in rows))
    models = list(dict.fromkeys(r.model for r in rows))
    cells: dict[tuple[str, str], str] = {}
    for r in rows:
        name = next(iter(r.scores), None)
        if name is not None:
            s = r.scores[name]
            ci = s.get("ci") or [None, None]
            cells[(r.model, r.suite)] = f"{name} {_num(s['value'], 3)} [{_num(ci[0], 3)}, {_num(ci[1], 3)}]"
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("model")
    for s_ in suites:
        t.add_column(esc(s_))
    for m in models:
        t.add_row(esc(m), *[cells.get((m, s_), "-") for s_ in suites])
    out.print(t)
    out.print(f"{len(rows)} result(s); `demoai eval show PATH` for one: "
              + ", ".join(esc(r.path) for r in rows[:5]) + (" ..." if len(rows) > 5 else ""))


@eval_group.command("show")
@click.argument("result")
@click.option("--examples", "-n", type=click.IntRange(min=0), default=5, show_default=True,
              help="Per-example predictions to print.")
@click.option("--failed", is_flag=True, help="Only examples that errored or scored below 1.")
@json_option
@handle_errors
def eval_show(result: str, examples: int, failed: bool, as_json: bool) -> None:
    """Show an evaluation result: scores, what it pinned, speed and examples.

    RESULT is [REV:]PATH of an .eval.json (REV defaults to HEAD).
    """
    v = P.evaluate.show_eval(open_repo(), result, examples=examples, failed=failed)
    if as_json:
        print_json(v.to_dict())
        return
    r = v.result
    print_scores(r.scores, title=f"{r.suite_name} · {r.model_ref} · {v.path} @ {v.commit[:12]}")
    pins = r.pins
    out.print(f"task {r.task}; {r.counts.get('examples')} examples, {r.counts.get('errored', 0)} errored")
    out.print(f"model {r.model[:19]} ({pins.get('backend')}), suite {r.suite[:19]}, dataset "
              f"{(r.dataset or '-')[:19]}" + (f", adapter {r.adapter[:19]}" if r.adapter else ""))
    out.print(f"parameters {pins.get('params')}, seed {pins.get('seed')}, chat template "
              f"{(pins.get('chat_template') or '-')[:19]}")
    if r.perf:
        out.print("speed: " + _perf_line(r.perf))
    for e in v.examples:
        status = f"[red]error[/red] {esc(e['error'])}" if e.get("error") else " ".join(
            f"{k[6:]}={_num(x, 3)}" for k, x in e.items() if k.startswith("score:"))
        out.print(f"\n[bold]#{e['index']}[/bold] ({esc(e['item'])}) {status}")
        if e.get("input"):
            out.print(f"  input:     {esc(e['input'][:300])}")
        out.print(f"  output:    {esc(str(e.get('output'))[:300])}")
        if e.get("reference"):
            out.print(f"  reference: {esc(e['reference'][:300])}")


@eval_group.command("compare")
@click.argument("base")
@click.argument("candidate")
@click.option("--metric", "metrics", multiple=True, help="Only this metric (repeatable).")
@json_option
@handle_errors
def eval_compare(base: str, candidate: str, metrics: tuple[str, ...], as_json: bool) -> None:
    """Compare two results item by item, with paired tests and flipped examples.

    BASE and CANDIDATE are [REV:]PATH of .eval.json results.
    """
    c = P.evaluate.compare_evals(open_repo(), base, candidate, metrics=list(metrics) or None)
    if as_json:
        print_json(c.to_dict())
        return
    print_comparison([m.to_dict() for m in c.metrics], c.inputs_changed)
    if c.only_base or c.only_candidate:
        out.print(f"  not shared: {c.only_base} example(s) only in base, {c.only_candidate} only in "
                  "candidate (left out of the tests)")


GATE_EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}


@eval_group.command("gate")
@click.option("--suite", "-s", required=True, help="The suite both sides run (a *.suite.yaml).")
@click.option("--base", "base_rev", default="HEAD", show_default=True,
              help="Revision of the base side (pins suite, data and model).")
@click.option("--candidate", "cand_rev", default="HEAD", show_default=True,
              help="Revision of the candidate side.")
@click.option("--model", help="Model of both sides (default: the suite's).")
@click.option("--base-model", help="Model of the base side.")
@click.option("--candidate-model", help="Model of the candidate side.")
@click.option("--base-adapter", help="Adapter of the base side.")
@click.option("--candidate-adapter", help="Adapter of the candidate side.")
@click.option("--metric", help="Metric to decide on (default: the suite's first).")
@click.option("--margin", type=float, default=0.0, show_default=True,
              help="How much worse the candidate may be, in the metric's units.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N examples.")
@click.option("--no-commit", is_flag=True, help="Decide and print, but commit nothing.")
@json_option
def eval_gate(suite: str, base_rev: str, cand_rev: str, model: str | None, base_model: str | None,
              candidate_model: str | None, base_adapter: str | None, candidate_adapter: str | None,
              metric: str | None, margin: float, alpha: float, limit: int | None, no_commit: bool,
              as_json: bool) -> None:
    """Regression gate: may the candidate replace the base?

    Both sides are evaluated (cached predictions are reused) and compared item by item.
    The candidate fails only when it is worse by more than --margin with significance;
    it passes when the data show it is not; otherwise the gate is inconclusive. The
    decision is committed as a gate record.

    \b
    Exit status: 0 pass, 1 fail, 2 error, 3 inconclusive.
    Example:
      demoai eval gate -s evals/arith.suite.yaml --base-model smollm2 \\
          --candidate-model smollm2 --candidate-adapter adapters/arith
    """
    import sys
    from demoai import errors as E
    try:
        res = P.evaluate.run_gate(
            open_repo(), suite,
            P.evaluate.Side(base_rev, base_model or model, base_adapter),
            P.evaluate.Side(cand_rev, candidate_model or model, candidate_adapter),
            metric=metric, margin=margin, alpha=alpha, limit=limit, do_commit=not no_commit)
    except E.DemoAIError as e:
        _exit_error(e, as_json)
    rec = res.run.record
    if as_json:
        print_json(res.to_dict())
    else:
        color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[rec.outcome]
        out.print(f"gate on {rec.metric}: [{color}]{rec.outcome.upper()}[/{color}] — {esc(res.run.reason)}")
        print_comparison([res.run.comparison.to_dict()], rec.refs.get("inputs_changed") or [])
        for label, o in (("base", res.run.base), ("candidate", res.run.candidate)):
            out.print(f"  {label}: {esc(o.result.model_ref)} "
                      + ("(cached)" if o.cached else f"({o.result.counts['examples']} examples run)"))
        if res.commit:
            out.print(f"committed {esc(res.path)} as {res.commit[:12]}")
    sys.exit(GATE_EXIT[rec.outcome])


@eval_group.command("test")
@click.argument("paths", nargs=-1)
@click.option("--model", "-m", help="Model for every suite (default: each suite's `model:`, else smollm2).")
@click.option("--rev", help="Take suites and models as committed at REV (default: the working tree).")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here.")
@click.option("--verbose", "-v", is_flag=True, help="Print each case's outputs too.")
@json_option
def eval_test(paths: tuple[str, ...], model: str | None, rev: str | None, junit: str | None,
              verbose: bool, as_json: bool) -> None:
    """Run sanity suites (suites of cases) like unit tests.

    Finds every *.suite.yaml with `cases:` under PATHS (default: the whole working tree)
    and prints a pytest-like report. Nothing is committed.

    \b
    Exit status: 0 every case passed, 1 a case failed, 2 an error (a case that errored, a
    suite that could not load or run).
    Example:
      demoai eval test evals/ --junit report.xml
    """
    import sys
    from pathlib import Path
    from demoai import errors as E
    try:
        repo = open_repo()
        marks: list[str] = []

        def on_case(suite: str, r: Any) -> None:
            if not as_json and err.is_terminal:
                marks.append({"passed": ".", "failed": "F"}.get(r.status, "E"))
                err.print(f"\r{suite}: {''.join(marks)}", end="")
        reports = P.evaluate.test_suites(repo, list(paths) or None, model=model, rev=rev, on_case=on_case)
    except E.DemoAIError as e:
        _exit_error(e, as_json)
    if not as_json and err.is_terminal:
        err.print("")
    if junit:
        Path(junit).write_text(P.evaluate.junit_xml(reports), encoding="utf-8")
    if as_json:
        print_json({"suites": [r.to_dict() for r in reports], "exit_code": P.evaluate.suite_exit_code(reports)})
    elif not reports:
        out.print("no suites of cases found" + (f" under {', '.join(paths)}" if paths else ""))
    else:
        click.echo(P.evaluate.format_report(reports, verbose=verbose))
    sys.exit(P.evaluate.suite_exit_code(reports))


def print_leaderboard(board: dict[str, Any]) -> None:
    """Ratings with 95% intervals and ranks, best first."""
    from rich.table import Table
    t = Table(show_edge=False, pad_edge=False)
    for c in ("rank", "model", "rating", "95% CI", "battles", "wins", "losses", "ties"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in board["rows"]:
        t.add_row(str(r["rank"]), esc(r["model"]), f"{r['rating']:.1f}",
                  f"[{r['lower']:.1f}, {r['upper']:.1f}]", str(r["battles"]), str(r["wins"]),
                  str(r["losses"]), str(r["ties"]))
    out.print(t)


@click.group("arena")
def arena_group() -> None:
    """Pairwise battles among models, rated by Bradley-Terry with intervals.

    \b
    Examples:
      demoai arena run --models smollm2,models/other.gguf --prompts data/prompts.jsonl --judge smollm2
      demoai arena show evals/arena/arena.arena.json
    """


@arena_group.command("run")
@click.option("--models", required=True, help="Comma-separated model references (at least two).")
@click.option("--prompts", required=True, help="A dataset in the tree holding the prompts.")
@click.option("--column", default="prompt", show_default=True, help="The prompts' text column.")
@click.option("--judge", help="A judge model (answers [[A]], [[B]] or [[C]] for a tie).")
@click.option("--human", is_flag=True, help="Ask a person in the terminal instead of a judge.")
@click.option("--name", default="arena", show_default=True, help="Name of the arena record.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N prompts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the schedule and bootstrap.")
@click.option("--rounds", type=click.IntRange(min=1000), default=1000, show_default=True,
              help="Bootstrap rounds of the intervals.")
@json_option
@handle_errors
def arena_run(models: str, prompts: str, column: str, judge: str | None, human: bool, name: str,
              limit: int | None, seed: int, rounds: int, as_json: bool) -> None:
    """Battle every pair of models on every prompt, in both orders, and rate them.

    The record (battles, ratings, win rates) is committed at evals/arena/NAME.arena.json
    and a PNG of the ratings with intervals is written next to it.
    """
    def ask(prompt: str, a: str, b: str) -> str:
        out.print(f"\n[bold]prompt:[/bold] {esc(prompt)}\n[bold]A:[/bold] {esc(a)}\n[bold]B:[/bold] {esc(b)}")
        return click.prompt("better answer? a / b / tie", default="tie", show_default=True)
    with EvalBar("battles", enabled=not as_json and not human) as bar:
        run = P.evaluate.arena_run(open_repo(), [m.strip() for m in models.split(",") if m.strip()],
                                   prompts, name=name, judge=judge, human=ask if human else None,
                                   column=column, limit=limit, seed=seed, rounds=rounds,
                                   on_progress=bar)
    if as_json:
        print_json(run.to_dict())
        return
    print_leaderboard(run.leaderboard.to_dict())
    c = run.record.counts
    out.print(f"{c['battles']} battles on {c['prompts']} prompts, {c['errored']} errored "
              "(off-format verdicts are counted, never ties)")
    out.print(f"plot: {esc(run.plot or '')}")
    if run.commit:
        out.print(f"committed {esc(run.path)} as {run.commit[:12]}")


@arena_group.command("show")
@click.argument("arena", default="evals/arena/arena.arena.json")
@json_option
@handle_errors
def arena_show(arena: str, as_json: bool) -> None:
    """Print an arena's leaderboard and redraw its plot.

    ARENA is [REV:]PATH of an .arena.json (default evals/arena/arena.arena.json).
    """
    run = P.evaluate.arena_show(open_repo(), arena)
    if as_json:
        print_json(run.to_dict())
        return
    print_leaderboard(run.leaderboard.to_dict())
    out.print(f"plot: {esc(run.plot or '')}")


@eval_group.command("bench")
@click.option("--model", "-m", default="smollm2", show_default=True,
              help="Model reference (a model path in the tree, smollm2, MODEL+ADAPTER).")
@click.option("--backend", type=click.Choice(["llamacpp", "transformers", "openai", "vllm"]),
              help="Backend to run it on (default: llamacpp for GGUF, else transformers).")
@click.option("-p", "--n-prompt", type=click.IntRange(min=1), default=512, show_default=True,
              help="Prompt tokens processed (pp).")
@click.option("-n", "--n-gen", type=click.IntRange(min=1), default=128, show_default=True,
              help="Tokens generated (tg).")
@click.option("-r", "--repetitions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repetitions (after one warm-up).")
@json_option
@handle_errors
def eval_bench(model: str, backend: str | None, n_prompt: int, n_gen: int, repetitions: int,
               as_json: bool) -> None:
    """Measure a model's prompt and generation speed, like llama-bench."""
    res = P.evaluate.bench_model(open_repo(), model, backend=backend, n_prompt=n_prompt,
                                 n_gen=n_gen, repetitions=repetitions)
    if as_json:
        print_json(res)
        return
    from rich.table import Table
    t = Table(show_edge=False, pad_edge=False)
    for c in ("model", "backend", "test", "tokens/s", "± std"):
        t.add_column(c, justify="left" if c in ("model", "backend", "test") else "right")
    b = (res.get("backend") or {}).get("backend", "")
    for key, label in (("pp", f"pp{n_prompt}"), ("tg", f"tg{n_gen}")):
        tps = res[key]["tokens_per_s"]
        t.add_row(esc(model), b, label, f"{tps['mean']:.2f}", f"{tps['std']:.2f}")
    out.print(t)
    tt = res.get("ttft_s") or {}
    host = res.get("hardware") or {}
    out.print(f"time to first token {tt.get('mean', 0) * 1000:.0f} ms (mean of {repetitions}); "
              f"{host.get('cpu') or host.get('machine', '')}, {host.get('threads', '?')} thread(s)")
