"""``demoai agent ...`` and the session side of ``demoai fork``: parse, call porcelain, print."""
from __future__ import annotations

from typing import Any

import click

from demoai import errors as E
from demoai.cli.common import err, esc, handle_errors, json_option, open_repo, out, print_json
from demoai.porcelain import agent as A

__all__ = ["agent", "fork_session_cmd", "parse_sets"]

_STYLE = {"run_start": "bold", "model_response": "cyan", "tool_call": "yellow", "tool_result": "green",
          "error": "red", "run_end": "bold magenta", "fork": "bold blue", "resume": "blue"}


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


def _printer(as_json: bool):
    def show(kind: str, data: dict) -> None:
        if as_json:
            return
        if kind == "model_response":
            err.print(f"[dim]step {data['step']}[/dim] [cyan]model[/cyan] {esc(data['text'][:200])}")
        elif kind == "tool_result":
            r = data["result"]
            flag = f" [red]{r.get('limit') or 'timeout'}[/red]" if r.get("limit") or r.get("timed_out") else ""
            txt = (r.get("stdout") or r.get("stderr") or "").strip()[:160]
            err.print(f"[dim]step {data['step']}[/dim] [yellow]{data['tool']}[/yellow] exit {r.get('exit_code')}"
                      f"{flag} {esc(txt)}")
        elif kind == "finish":
            err.print(f"[dim]step {data['step']}[/dim] [magenta]finish[/magenta] {esc(data['answer'])}")
    return show


@click.group()
def agent() -> None:
    """Run agents and inspect, compare and replay their sessions."""


@agent.command("run")
@click.argument("agent_path", required=False)
@click.option("--task", default="", help="The task given to the agent.")
@click.option("--rev", default="HEAD", help="Revision to take the agent and model from.")
@click.option("--name", help="Session name (default: derived from the agent).")
@click.option("--sandbox", type=click.Choice(["namespace", "docker"]), help="Override the sandbox backend.")
@click.option("--model", help="Override the model: a model path in the tree, or smollm2.")
@click.option("--max-steps", type=int, help="Stop after this many steps (more steps with --from).")
@click.option("--from", "from_session", help="Continue this (forked) session instead.")
@json_option
@handle_errors
def run(agent_path: str | None, task: str, rev: str, name: str | None, sandbox: str | None,
        model: str | None, max_steps: int | None, from_session: str | None, as_json: bool) -> None:
    """Run AGENT (an *.agent.yaml path) on --task, or continue a session with --from."""
    repo = open_repo()
    if from_session:
        res = A.continue_session(repo, from_session, max_steps=max_steps, sandbox=sandbox,
                                 on_event=_printer(as_json))
    elif agent_path:
        res = A.run_agent(repo, agent_path, task=task, rev=rev, name=name, sandbox=sandbox, model=model,
                          max_steps=max_steps, on_event=_printer(as_json))
    else:
        raise E.PathNotFound("agent run needs an AGENT path or --from SESSION")
    if as_json:
        return print_json(res.to_dict())
    out.print(f"session [bold]{esc(res.session)}[/bold]: {res.status} after {res.steps} step(s)"
              + (f"; answer: {esc(str(res.answer))}" if res.answer else ""))


@agent.command("sessions")
@json_option
@handle_errors
def sessions_cmd(as_json: bool) -> None:
    """List sessions, newest first."""
    items = A.list_sessions(open_repo())
    if as_json:
        return print_json([s.to_dict() for s in items])
    from rich.table import Table

    t = Table("session", "status", "steps", "agent", "forked from", box=None)
    for s in items:
        p = s.parent
        t.add_row(esc(s.name), s.status, str(s.steps), esc(str(s.meta.get("agent", ""))),
                  esc(f"{p['session']}@{p['step']}") if p else "")
    out.print(t)


@agent.command("log")
@click.argument("session")
@json_option
@handle_errors
def log_cmd(session: str, as_json: bool) -> None:
    """The timeline of SESSION, one line per event."""
    res = A.session_log(open_repo(), session)
    if as_json:
        return print_json(res.to_dict())
    s = res.session
    out.print(f"[bold]{esc(s.name)}[/bold] {s.status}, {s.steps} steps, head {s.head[:19]}")
    for e in res.events:
        st = _STYLE.get(e.type, "")
        out.print(f"  [dim]{e.step:>3}[/dim] [{st}]{e.type:<14}[/{st}] {esc(e.summary)}" if st else
                  f"  [dim]{e.step:>3}[/dim] {e.type:<14} {esc(e.summary)}")


@agent.command("show")
@click.argument("spec")
@json_option
@handle_errors
def show_cmd(spec: str, as_json: bool) -> None:
    """The events of SESSION@STEP and the workspace files after it."""
    res = A.session_step(open_repo(), spec)
    if as_json:
        return print_json(res.to_dict())
    out.print(f"[bold]{esc(res.session)}@{res.step}[/bold] commit {res.commit[:12]}")
    for e in res.events:
        body = {k: v for k, v in e.body.items() if k not in ("type", "step", "t")}
        out.print(f"  [{_STYLE.get(e.type, 'white')}]{e.type}[/] {esc(str(body))[:600]}")
    if res.workspace:
        out.print("  workspace: " + ", ".join(f"{esc(p)} ({n} B)" for p, n in res.workspace.items()))


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


@agent.command("replay")
@click.argument("session")
@click.option("--mode", type=click.Choice(["recorded", "reexecute", "live"]), default="recorded")
@click.option("--from", "from_step", type=int, help="Step to start from (default 0).")
@click.option("--sandbox", type=click.Choice(["namespace", "docker"]), help="Sandbox for reexecute/live.")
@click.option("--max-steps", type=int, help="live: steps to run after the fork point.")
@json_option
@handle_errors
def replay_cmd(session: str, mode: str, from_step: int | None, sandbox: str | None,
               max_steps: int | None, as_json: bool) -> None:
    """Replay SESSION: recorded (verify), reexecute (tools for real) or live (model again)."""
    res = A.replay(open_repo(), session, mode, from_step, sandbox=sandbox, max_steps=max_steps,
                   on_event=_printer(as_json))
    if as_json:
        return print_json(res.to_dict())
    if isinstance(res, A.RecordedReplay):
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
        r = res.result
        out.print(f"live replay recorded as session [bold]{esc(res.new_session)}[/bold]: "
                  f"{r.status} after {r.steps} step(s)")


def fork_session_cmd(spec: str, name: str | None, sets: tuple[str, ...], model: str | None,
                     prompt: str | None) -> None:
    """The session form of ``demoai fork SESSION@STEP [NAME]``."""
    res = A.fork_session(open_repo(), spec, name, sets=parse_sets(sets), model=model or None,
                         prompt=prompt or None)
    p = res.parent
    out.print(f"Forked session {esc(p['session'])}@{p['step']} as [bold]{esc(res.session)}[/bold] "
              f"(commit {res.commit[:12]}); continue it with `demoai agent run --from {esc(res.session)}`")
