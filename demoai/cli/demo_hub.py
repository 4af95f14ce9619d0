"""The hub part of the main job: serve a hub on 127.0.0.1, push the demo repository to it,
clone it elsewhere and replay the cloned agent session."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from demoai import porcelain as P
from demoai.porcelain import agent as A

__all__ = ["hub_tour", "LocalHub"]


class LocalHub:
    """A hub served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, data: Path) -> None:
        import uvicorn

        from demoai.hub.app import create_app
        self.app = create_app(data)
        self.hub = self.app.state.hub
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # log_config=None: an embedded server must not reconfigure the process's logging
        # (uvicorn's default binds handlers to whatever sys.stderr is at that moment)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off",
                                                    log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def hub_tour(repo: Any, root: Path, target: Path, data: Path, console: Console, step: Any) -> bool:
    """Push ``repo`` (with its sessions) to a fresh hub keeping its data in ``data``, clone
    it into ``target`` and verify; True if all is well."""
    data.mkdir(parents=True, exist_ok=True)
    step(f"hub: serve on 127.0.0.1 (data {data}), add user demo with a write token")
    with LocalHub(data) as hub:
        hub.hub.meta.add_user("demo")
        token, _ = hub.hub.meta.create_token("demo", "write", "main job")
        url = f"{hub.url}/demo/{root.name}"
        console.print(f"  hub at {hub.url}; repository URL {url}", markup=False)

        step("push --all: branches, tags and agent sessions")
        P.remote_add(repo, "origin", url)
        pushed = P.push(repo, "origin", all_refs=True, token=token, private=True)
        st = pushed["stats"]
        console.print(f"  {len(pushed['updated'])} refs; {st['git_sent']} git objects, {st['chunks_sent']} chunks, "
                      f"{st['files_sent']} table files; {st['bytes_sent'] / 1e6:.1f} MB sent", markup=False)
        again = P.push(repo, "origin", all_refs=True, token=token)
        console.print(f"  push again: {len(again['updated'])} refs moved, "
                      f"{again['stats']['bytes_sent']} bytes sent", markup=False)

        step("clone into a fresh folder, fsck it, replay the cloned session")
        cloned = P.clone(url, target, token=token)
        console.print(f"  cloned into {cloned['path']} (branch {cloned['branch']} at {cloned['commit'][:12]})",
                      markup=False)
        with P.open_repository(target, search=False) as clone:
            fs = P.fsck(clone)
            console.print(f"  clone fsck: {'ok' if fs['ok'] else 'BROKEN'} "
                          + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in fs["counts"].items()), markup=False)
            for prob in fs["problems"]:
                console.print(f"  [red]{prob}[/red]")
            same = A.artifact_digests(clone) == A.artifact_digests(repo)
            console.print(f"  artifact digests identical to the source: {same}", markup=False)
            names = [s.name for s in A.list_sessions(clone)]
            console.print(f"  sessions in the clone: {', '.join(names)}", markup=False)
            mine, theirs = A.replay(repo, "demo-run"), A.replay(clone, "demo-run")
            assert isinstance(mine, A.RecordedReplay) and isinstance(theirs, A.RecordedReplay)
            replay_same = (mine.events, mine.steps, mine.head, mine.timeline) == \
                (theirs.events, theirs.steps, theirs.head, theirs.timeline)
            console.print(f"  replay recorded in the clone: {theirs.events} events over {theirs.steps} "
                          f"steps verified; identical to the source: {replay_same}", markup=False)
        import httpx
        page = httpx.get(f"{hub.url}/demo/{root.name}", cookies={"demoai_token": token}, timeout=30)
        found = hub.hub.meta.search("question")
        console.print(f"  web page {hub.url}/demo/{root.name}: HTTP {page.status_code}; search 'question': "
                      f"{', '.join(h['path'] for h in found) or 'no hits'}", markup=False)
        return fs["ok"] and same and replay_same and page.status_code == 200
