"""``demoai agent ...`` and the session side of ``demoai fork``: parse, call porcelain, print."""
from __future__ import annotations

import sys
import textwrap
from typing import Any

import click

from demoai import errors as E
from demoai.cli.common import err, esc, handle_errors, json_option, open_repo, out, print_json
from demoai.porcelain import agent as A

__all__ = ["agent", "fork_session_cmd", "parse_sets", "EXIT_FINISHED", "EXIT_FAILED",
           "EXIT_STOPPED", "exit_code_for"]

# Exit status of a command that runs an agent (`agent run`, `agent replay --mode live`).
EXIT_FINISHED = 0       # the model called finish
EXIT_FAILED = 1         # an error ended the run (or the command)
EXIT_STOPPED = 3        # max_steps ran out before the model called finish
# (2 is click's: a usage error)
_EXIT_HELP = ("Exit status: 0 the model called finish; 1 an error (the run failed, or the "
              "command did); 2 a usage error; 3 the run stopped at max_steps without the model "
              "calling finish (the task was not declared done).")

_STYLE = {"run_start": "bold", "model_response": "cyan", "tool_call": "yellow", "tool_result": "green",
          "error": "red", "run_end": "bold magenta", "fork": "bold blue", "resume": "blue"}
STATUS_STYLE = {"finished": "green", "max_steps": "red", "failed": "red", "interrupted": "yellow",
                "running": "cyan", "forked": "blue"}


def exit_code_for(status: str) -> int:
    """The exit status for a run that ended with ``status``."""
    return {"finished": EXIT_FINISHED, "max_steps": EXIT_STOPPED}.get(status, EXIT_FAILED)


def _status(status: str) -> str:
    st = STATUS_STYLE.get(status, "")
    return f"[{st}]{esc(status)}[/{st}]" if st else esc(status)


def parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; numbers become numbers."""
    import yaml
    outd: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise E.InvalidArtifact(f"--set takes key=value, got {it!r}")
        k, v = it.split("=", 1)
        val = yaml.safe_load(v) if v and v[0] in "0123456789.-" else v
        outd[k.strip()] = val
    return outd


def _line(text: str, n: int = 200) -> str:
    return esc(A.shorten(A.one_line(text), n))


def _printer(as_json: bool):
    """Live progress on stderr: every step's model reply (also one that was not a valid
    tool call), errors, tool results, and how the run ended."""
    def show(kind: str, data: dict) -> None:
        if as_json:
            return
        step = f"[dim]step {data.get('step')}[/dim]"
        if kind == "model_response":
            if data.get("invalid"):
                err.print(f"{step} [cyan]model[/cyan] [red](not a valid tool call)[/red] {_line(data['text'])}")
            else:
                err.print(f"{step} [cyan]model[/cyan] {_line(data['text'])}")
        elif kind == "error":
            err.print(f"{step} [red]error[/red] {esc(data.get('message', ''))}")
        elif kind == "tool_result":
            r = data["result"]
            flag = f" [red]{r.get('limit') or 'timeout'}[/red]" if r.get("limit") or r.get("timed_out") else ""
            txt = _line((r.get("stdout") or r.get("stderr") or "").strip(), 160)
            files = r.get("files") or {}
            changed = f" [dim]files: {esc(', '.join(files))}[/dim]" if files else ""
            err.print(f"{step} [yellow]{data['tool']}[/yellow] exit {r.get('exit_code')}{flag} {txt}{changed}")
        elif kind == "finish":
            err.print(f"{step} [magenta]finish[/magenta] {esc(data['answer'])}")
        elif kind == "stopped":
            err.print(f"{step} [red]stopped: max_steps ({data.get('max_steps')}) reached without a "
                      "finish call[/red]")
    return show


def _print_result(res: A.RunResult, what: str = "session") -> None:
    """The run's last line: its status, in words, and what to do about it."""
    head = f"{what} [bold]{esc(res.session)}[/bold]: {_status(res.status)} after {res.steps} step(s)"
    if res.status == "finished":
        out.print(head + (f"; answer: {esc(str(res.answer))}" if res.answer else ""))
    elif res.status == "max_steps":
        out.print(head + " [red]without the model calling finish: the task was not declared done[/red]")
        out.print(f"  look at it with `demoai agent log {esc(res.session)}`; give it more steps with "
                  f"`demoai agent run --from {esc(res.session)} --max-steps N`", style="dim")
    else:
        out.print(head + f"; see `demoai agent log {esc(res.session)}`")


@click.group()
def agent() -> None:
    """Run agents and inspect, compare and replay their sessions."""


@agent.command("run", epilog=_EXIT_HELP)
@click.argument("agent_path", required=False)
@click.option("--task", default="", help="The task given to the agent.")
@click.option("--rev", default=None,
              help="Run the agent file committed at this revision (default: the file in the working tree).")
@click.option("--name", help="Session name (default: derived from the agent).")
@click.option("--sandbox", type=click.Choice(["namespace", "docker"]), help="Override the sandbox backend.")
@click.option("--model", help="Override the model: smollm2 (embedded), or a model path committed in the tree.")
@click.option("--max-steps", type=int, help="Stop after this many steps (more steps with --from).")
@click.option("--from", "from_session", help="Continue this (forked or stopped) session instead.")
@json_option
@handle_errors
def run(agent_path: str | None, task: str, rev: str | None, name: str | None, sandbox: str | None,
        model: str | None, max_steps: int | None, from_session: str | None, as_json: bool) -> None:
    """Run the agent at AGENT_PATH on --task, or continue a session with --from.

    \b
    AGENT_PATH (an *.agent.yaml) is read from the working tree, committed or not: like
    `git` and `dvc repro`, what is on disk runs. The session pins its exact text by
    digest, and names the commit when the file is the one committed at HEAD. --rev REV
    runs the version committed at REV instead. The agent's model must be committed
    (`demoai add` a GGUF and commit it) or be the embedded `smollm2`; --model overrides.
    A run is "finished" only when the model calls finish. One whose --max-steps ran out
    first ends "max_steps" (shown in red): the task was not declared done.
    Example:
      demoai agent run agents/files.agent.yaml --task "Create hello.txt containing hello"
    """
    repo = open_repo()
    if from_session:
        res = A.continue_session(repo, from_session, max_steps=max_steps, sandbox=sandbox,
                                 on_event=_printer(as_json))
    elif agent_path:
        res = A.run_agent(repo, agent_path, task=task, rev=rev, name=name, sandbox=sandbox, model=model,
                          max_steps=max_steps, on_event=_printer(as_json))
    else:
        raise click.UsageError("agent run needs an AGENT_PATH or --from SESSION")
    if as_json:
        print_json(res.to_dict())
    else:
        _print_result(res)
    sys.exit(exit_code_for(res.status))


@agent.command("sessions")
@json_option
@handle_errors
def sessions_cmd(as_json: bool) -> None:
    """List sessions, newest first (names are never shortened)."""
    items = A.list_sessions(open_repo())
    if as_json:
        return print_json([s.to_dict() for s in items])
    if not items:
        out.print("no sessions yet: `demoai agent run AGENT --task ...` makes one", style="dim")
        return
    from rich.table import Table

    rows = [(s.name, s.status, str(s.steps), str(s.meta.get("agent", "") or ""),
             f"{s.parent['session']}@{s.parent['step']}" if s.parent else "") for s in items]
    heads = ["session", "status", "steps", "agent", "forked from"]
    if not any(r[4] for r in rows):
        heads.pop()
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    if sum(widths) + 2 * (len(widths) - 1) > out.width:
        # Too narrow for every column at full width: one block per session instead, so
        # that nothing (names, paths) is ever cut or broken.
        for name, status, steps, agent_path, parent in rows:
            out.print(esc(name), soft_wrap=True)
            extra = f", agent {esc(agent_path)}" if agent_path else ""
            extra += f", forked from {esc(parent)}" if parent else ""
            out.print(f"  {_status(status)}, {steps} step(s){extra}", soft_wrap=True)
        return
    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for i, h in enumerate(heads):
        t.add_column(h, no_wrap=True, min_width=widths[i], justify="right" if h == "steps" else "left")
    for r in rows:
        t.add_row(esc(r[0]), _status(r[1]), *(esc(x) for x in r[2:len(heads)]))
    out.print(t, soft_wrap=False)


@agent.command("log")
@click.argument("session")
@json_option
@handle_errors
def log_cmd(session: str, as_json: bool) -> None:
    """The timeline of SESSION, one line per event.

    `demoai agent show SESSION@STEP` shows one step in full."""
    res = A.session_log(open_repo(), session)
    if as_json:
        return print_json(res.to_dict())
    s = res.session
    out.print(f"[bold]{esc(s.name)}[/bold] {_status(s.status)}, {s.steps} steps, head {s.head[:19]}")
    for e in res.events:
        st = _STYLE.get(e.type, "")
        kind = f"[{st}]{e.type:<14}[/{st}]" if st else f"{e.type:<14}"
        out.print(f"  [dim]{e.step:>3}[/dim] {kind} {esc(e.summary)}")


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _field_lines(name: str, value: str, width: int, indent: int = 4) -> list[str]:
    """``name: value`` wrapped at word boundaries to ``width``; a value of several lines
    goes under the name, indented. Nothing is cut."""
    pad = " " * indent
    lines = value.splitlines() or [""]
    if len(lines) == 1 and indent + len(name) + 2 + len(lines[0]) <= width:
        return [f"{pad}{name}: {lines[0]}"]
    if len(lines) == 1:
        wrapped = textwrap.wrap(lines[0], width=max(20, width - indent), initial_indent=f"{name}: ",
                                subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
        return [pad + w for w in wrapped]
    body = []
    for ln in lines:
        body += textwrap.wrap(ln, width=max(20, width - indent - 2), break_long_words=False,
                              break_on_hyphens=False, replace_whitespace=False, drop_whitespace=False) or [""]
    return [f"{pad}{name}:"] + [f"{pad}  {b}".rstrip() for b in body]


@agent.command("show")
@click.argument("spec")
@json_option
@handle_errors
def show_cmd(spec: str, as_json: bool) -> None:
    """One step of a session in full: its events, and the workspace after it.

    SPEC is SESSION@STEP (SESSION alone: its last step). Each event comes with a
    one-line summary, then its fields whole (texts wrapped, never cut); the workspace
    files are listed with their sizes."""
    res = A.session_step(open_repo(), spec)
    if as_json:
        return print_json(res.to_dict())
    width = max(40, out.width)
    out.print(f"[bold]{esc(res.session)}@{res.step}[/bold]  commit {res.commit}")
    for e in res.events:
        st = _STYLE.get(e.type, "white")
        summary = A.shorten(A.event_summary(e), max(20, width - len(e.type) - 4))
        out.print(f"\n  [{st}]{e.type}[/{st}]  {esc(summary)}", soft_wrap=True)
        for name, value in A.event_fields(e):
            for line in _field_lines(name, value, width):
                out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print("")
    if res.workspace:
        out.print(f"  workspace after step {res.step}: {len(res.workspace)} file(s)")
        for path, size in res.workspace.items():
            out.print(f"    {_human_size(size):>10}  {path}", markup=False, soft_wrap=True)
    else:
        out.print(f"  workspace after step {res.step}: empty")


@agent.command("diff")
@click.argument("a")
@click.argument("b")
@json_option
@handle_errors
def diff_cmd(a: str, b: str, as_json: bool) -> None:
    """Where sessions A and B part, and what differs there."""
    res = A.diff_sessions(open_repo(), a, b)
    if as_json:
        return print_json(res.to_dict())
    out.print(f"{esc(a)}: {res.steps[0]} steps, {esc(b)}: {res.steps[1]} steps; "
              f"{res.shared_events} shared event(s)")
    d = res.first_divergence
    if res.identical or d is None:
        out.print("[green]identical[/green]")
        return
    out.print(f"first divergence at step {d.step} (event {d.index}), fields: {', '.join(d.fields) or '-'}")
    for side, x in (("a", d.a), ("b", d.b)):
        out.print(f"  {side}: " + (f"[bold]{x.type}[/bold] {esc(x.detail)}" if x else "(ends)"))


@agent.command("replay", epilog="With --mode live: " + _EXIT_HELP)
@click.argument("session")
@click.option("--mode", type=click.Choice(["recorded", "reexecute", "live"]), default="recorded",
              help="recorded: verify the chain; reexecute: run the tools again; live: call the model again.")
@click.option("--from", "from_step", type=int, help="Step to start from (default 0).")
@click.option("--sandbox", type=click.Choice(["namespace", "docker"]), help="Sandbox for reexecute/live.")
@click.option("--max-steps", type=int, help="live: steps to run after the fork point.")
@json_option
@handle_errors
def replay_cmd(session: str, mode: str, from_step: int | None, sandbox: str | None,
               max_steps: int | None, as_json: bool) -> None:
    """Replay SESSION: recorded, reexecute (tools again) or live (the model again)."""
    res = A.replay(open_repo(), session, mode, from_step, sandbox=sandbox, max_steps=max_steps,
                   on_event=_printer(as_json))
    if as_json:
        print_json(res.to_dict())
    elif isinstance(res, A.RecordedReplay):
        out.print(f"[green]verified[/green] {res.events} events, {res.steps} steps, head "
                  f"{res.head[:19]} in {res.seconds * 1000:.1f} ms")
    elif isinstance(res, A.ReexecuteReplay):
        for r in res.steps:
            mark = "[green]same[/green]" if r.same else f"[red]differs[/red] ({', '.join(r.fields)})"
            out.print(f"  step {r.step:>3} {r.tool:<10} {mark}")
        d = res.first_divergence
        out.print("[green]all observations match[/green]" if d is None else
                  f"[yellow]first divergence at step {d.step}[/yellow]: {', '.join(d.fields)}")
    else:
        _print_result(res.result, "live replay recorded as session")
    if isinstance(res, A.LiveReplay):
        sys.exit(exit_code_for(res.result.status))


def fork_session_cmd(spec: str, name: str | None, sets: tuple[str, ...], model: str | None,
                     prompt: str | None) -> None:
    """The session form of ``demoai fork SESSION@STEP [NAME]``."""
    res = A.fork_session(open_repo(), spec, name, sets=parse_sets(sets), model=model or None,
                         prompt=prompt or None)
    p = res.parent
    out.print(f"Forked session {esc(p['session'])}@{p['step']} as [bold]{esc(res.session)}[/bold] "
              f"(commit {res.commit[:12]}); continue it with `demoai agent run --from {esc(res.session)}`")
