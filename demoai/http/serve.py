"""A Python client of ``demoai serve`` (httpx): agents, sessions, runs, forks, replays, and
a session's progress as server-sent events.

    with ServeClient("http://127.0.0.1:8000", token="s3cret") as c:
        run = c.start_run("agents/files.agent.yaml", task="Create hello.txt")
        for ev in c.stream(run["session"]):
            print(ev["event"], ev["data"].get("type"))

The plumbing (token, timeouts, typed errors: a missing session is a ``SessionNotFound``
here too, a server that cannot be reached a ``RemoteError``) is
:class:`~demoai.http.client.HttpClient`'s. The ``/v1`` routes are OpenAI-compatible: use
the ``openai`` package for them, or :meth:`ServeClient.chat` and :meth:`ServeClient.complete`;
:meth:`ServeClient.metrics` reads ``GET /metrics``.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from demoai.errors import RemoteError
from demoai.http.client import HttpClient
from demoai.http.errors import raise_for_status

__all__ = ["ServeClient"]


class ServeClient(HttpClient):
    """Talks to one ``demoai serve`` at ``base_url``; ``token`` is its bearer token. Calls
    are not retried (starting a run twice would start two)."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        super().__init__(base_url, token, timeout=timeout, connect_timeout=10.0)

    def __enter__(self) -> "ServeClient":
        return self

    # --- plumbing ---
    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        return self.json(method, path, body, params=params)

    @staticmethod
    def _body(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None}

    # --- reads ---
    def health(self) -> dict[str, Any]:
        """The server's liveness answer (repository path, version)."""
        return self._call("GET", "/api/health")

    def agents(self, rev: str = "HEAD") -> list[dict[str, Any]]:
        """Agent artifacts in the tree at ``rev``."""
        return self._call("GET", "/api/agents", params={"rev": rev})

    def sessions(self) -> list[dict[str, Any]]:
        """Every session, newest first."""
        return self._call("GET", "/api/sessions")

    def session(self, name: str) -> dict[str, Any]:
        """A session's state and timeline."""
        return self._call("GET", f"/api/sessions/{name}")

    def events(self, name: str, from_step: int = 0) -> list[dict[str, Any]]:
        """A session's events (full bodies) from ``from_step`` on."""
        return self._call("GET", f"/api/sessions/{name}/events", params={"from_step": from_step})

    def step(self, name: str, step: int) -> dict[str, Any]:
        """One step's events, commit and workspace files."""
        return self._call("GET", f"/api/sessions/{name}/steps/{step}")

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Where sessions ``a`` and ``b`` part."""
        return self._call("GET", f"/api/sessions/{a}/diff", params={"other": b})

    def runs(self) -> list[dict[str, Any]]:
        """The server's background work."""
        return self._call("GET", "/api/runs")

    def run(self, name: str) -> dict[str, Any]:
        """The state of the server's work on session ``name``."""
        return self._call("GET", f"/api/runs/{name}")

    # --- work ---
    def start_run(self, agent: str, task: str = "", *, name: str | None = None, rev: str | None = None,
                  model: str | None = None, sandbox: str | None = None, max_steps: int | None = None,
                  seed: int | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start an agent run; returns at once with ``session`` (the run goes on in the
        background: follow it with :meth:`stream` or :meth:`wait`)."""
        return self._call("POST", "/api/runs", self._body(
            agent=agent, task=task, name=name, rev=rev, model=model, sandbox=sandbox,
            max_steps=max_steps, seed=seed, params=params))

    def fork(self, name: str, step: int | None = None, new_name: str | None = None, *,
             set: dict[str, Any] | None = None, instruction: str | None = None,
             model: str | None = None, prompt: str | None = None) -> dict[str, Any]:
        """Fork ``name`` at ``step`` with overrides (``set`` is ``--set key=value``)."""
        return self._call("POST", f"/api/sessions/{name}/fork", self._body(
            step=step, name=new_name, set=set, instruction=instruction, model=model, prompt=prompt))

    def replay(self, name: str, mode: str = "recorded", from_step: int | None = None, *,
               sandbox: str | None = None, max_steps: int | None = None,
               new_name: str | None = None) -> dict[str, Any]:
        """Replay ``name``: the report (recorded, reexecute), or for ``live`` the new
        session started in the background."""
        return self._call("POST", f"/api/sessions/{name}/replay", self._body(
            mode=mode, from_step=from_step, sandbox=sandbox, max_steps=max_steps, name=new_name))

    def continue_session(self, name: str, *, max_steps: int | None = None,
                         sandbox: str | None = None) -> dict[str, Any]:
        """Continue ``name`` from its last step, in the background."""
        return self._call("POST", f"/api/sessions/{name}/continue",
                          self._body(max_steps=max_steps, sandbox=sandbox))

    # --- progress ---
    def stream(self, name: str, from_step: int = 0) -> Iterator[dict[str, Any]]:
        """The session's events as they are committed: dicts ``{"event", "id", "data"}``
        (``data`` parsed), ending with the ``end`` event."""
        with self.stream_lines("GET", f"/api/sessions/{name}/stream",
                               params={"from_step": from_step}) as lines:
            yield from _sse(lines)

    def wait(self, name: str) -> dict[str, Any]:
        """Follow ``name`` to its end; returns the ``end`` event's data, or raises the typed
        error the run stopped with (e.g. a model that could not be opened)."""
        for ev in self.stream(name):
            if ev["event"] == "end":
                err = ev["data"].get("error") if isinstance(ev["data"], dict) else None
                if err:
                    raise_for_status(err.get("status", 500), {"error": err.get("error")}, f"run {name}")
                return ev["data"]
        raise RemoteError(f"the stream of {name} ended without an end event", session=name)

    # --- models ---
    def models(self) -> list[dict[str, Any]]:
        """Model ids the server answers for (``GET /v1/models``)."""
        return self._call("GET", "/v1/models")["data"]

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """One non-streaming chat completion (OpenAI body; ``params`` as OpenAI names them)."""
        return self._call("POST", "/v1/chat/completions",
                          {"model": model, "messages": messages, **params})

    def complete(self, model: str, prompt: str | list[Any], **params: Any) -> dict[str, Any]:
        """One legacy completion (``POST /v1/completions``): a raw prompt (string, token ids,
        or a list of either), ``echo``, ``logprobs``, ``max_tokens`` ... as OpenAI names them."""
        return self._call("POST", "/v1/completions", {"model": model, "prompt": prompt, **params})

    def metrics(self) -> str:
        """The server's Prometheus metrics (``GET /metrics``), as text."""
        return self.request("GET", "/metrics").text


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events from lines: ``event``/``id``/``data`` fields, a blank line ends one."""
    event, eid, data = "message", None, []
    for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    parsed: Any = json.loads(text)
                except ValueError:
                    parsed = text
                yield {"event": event, "id": eid, "data": parsed}
            event, eid, data = "message", None, []
            continue
        if line.startswith(":"):
            continue                           # a comment (keep-alive ping)
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "id":
            eid = value
        elif field == "data":
            data.append(value)
