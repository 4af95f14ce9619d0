"""Session logs: hash chain, step commits on their own ref, O(1) fork, cache rebuild,
crash safety and tamper detection. No model or sandbox here (see test_agent.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from demoai.errors import IntegrityError, RefConflict, SessionNotFound
from demoai.porcelain.fsck import fsck
from demoai.store.sessions import log as S
from demoai.store.git.repo import Repository

AGENT = "blake3:" + "a" * 64


def _git(repo: Repository, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(repo.control / "git"), *args],
                          capture_output=True, text=True)


def _make(repo: Repository, name: str = "s", steps: int = 6, files: bool = True) -> S.SessionLog:
    log = S.create_session(repo, name, agent=AGENT, meta={"name": name}, start={"task": "t"})
    for k in range(1, steps + 1):
        log.append("model_response", text=f"reply {k}")
        log.append("tool_result", exit_code=0, stdout=f"out {k}\n")
        ws = S.workspace_tree(repo, {"notes.txt": f"v{k // 2}".encode(), "sub/keep.txt": b"k"})[0] if files else None
        log.commit_step(workspace=ws)
    return log


def test_steps_are_commits_on_the_session_ref_and_git_reads_them(repo):
    log = _make(repo)
    log.close()
    out = _git(repo, "log", "--oneline", "refs/sessions/s").stdout.splitlines()
    assert len(out) == 7 and out[-1].endswith("session s: start")
    assert _git(repo, "fsck", "--full").returncode == 0
    # each step commit carries only its own events
    ev = _git(repo, "show", "refs/sessions/s:.demoai/events").stdout.splitlines()
    assert len(ev) == 2 and '"reply 6"' in ev[0]
    man = json.loads(_git(repo, "show", "refs/sessions/s:session").stdout)
    assert man["kind"] == "session" and man["steps"] == 6 and man["head"].startswith("blake3:")
    assert _git(repo, "show", "refs/sessions/s~2:.demoai/workspace/notes.txt").stdout == "v2"


def test_chain_verifies_and_head_pins_everything(repo):
    log = _make(repo)
    res = log.verify()
    assert res["events"] == 13 and res["head"] == log.manifest.head
    assert log.verify(from_git=True)["head"] == res["head"]
    lines = log.lines()
    # change one character in the middle of one event: its id no longer matches
    bad = lines[:]
    bad[5] = bad[5].replace(b"reply", b"rep1y")
    with pytest.raises(IntegrityError, match="event 5"):
        S.verify_lines(bad)
    # drop an event: the next one no longer chains
    with pytest.raises(IntegrityError, match="does not chain"):
        S.verify_lines(lines[:4] + lines[5:])


def test_fork_shares_history_and_workspace_without_copying(repo):
    src = _make(repo, steps=8)
    objects_before = sum(1 for _ in repo.git.object_store)
    fork = S.fork_session(repo, "s@4", "f", overrides={"instruction": "do it differently"})
    # one commit + tree + .demoai tree + events blob + manifest blob; the workspace tree is reused
    assert sum(1 for _ in repo.git.object_store) - objects_before == 5
    assert fork.steps == 4 and fork.manifest.parent == {"session": "s", "step": 4, "commit": src.step_commit(4)}
    assert [fork.step_commit(k) for k in range(4)] == [src.step_commit(k) for k in range(4)]
    assert fork.lines()[:-1] == src.lines(4)
    assert fork.events()[-1].type == "fork"
    assert fork.workspace_at() == src.workspace_at(4) == {"notes.txt": b"v2", "sub/keep.txt": b"k"}
    assert fork.verify()["verified"] and fork.verify(from_git=True)["verified"]
    fork.close()
    # the fork appends on its own ref; the source is untouched
    with S.open_session(repo, "f", writable=True) as w:
        w.append("model_response", text="other")
        w.commit_step()
    assert S.open_session(repo, "s").steps == 8
    f = S.open_session(repo, "f")
    assert f.steps == 5 and f.verify()["events"] == 9 + 1 + 1
    assert _git(repo, "merge-base", "refs/sessions/s", "refs/sessions/f").stdout.strip() == src.step_commit(4)


def test_fork_of_a_fork_and_cache_rebuild(repo):
    _make(repo, steps=5).close()
    S.fork_session(repo, "s@3", "f1").close()
    with S.open_session(repo, "f1", writable=True) as w:
        for _ in range(3):
            w.append("x", n=1)
            w.commit_step()
    S.fork_session(repo, "f1@5", "f2").close()
    f2 = S.open_session(repo, "f2")
    head, n = f2.manifest.head, len(f2.lines())
    s_commit = S.open_session(repo, "s").step_commit(2)
    shutil.rmtree(repo.control / "sessions")       # a clone or a lost cache: rebuilt from git
    f2 = S.open_session(repo, "f2")
    assert f2.manifest.head == head and len(f2.lines()) == n and f2.verify()["verified"]
    assert f2.step_commit(2) == s_commit


def test_stale_or_damaged_cache_is_rebuilt_not_trusted(repo):
    log = _make(repo)
    log.close()
    steps = repo.control / "sessions" / "s" / "steps"
    steps.write_bytes(steps.read_bytes()[:-28])          # cache one step behind the ref
    log = S.open_session(repo, "s")
    assert log.steps == 6 and log.verify()["events"] == 13
    j = repo.control / "sessions" / "s" / "journal"
    data = bytearray(j.read_bytes())
    data[100] ^= 0x01                                     # a flipped byte in the cache
    j.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        S.open_session(repo, "s").verify()
    assert S.open_session(repo, "s").verify(from_git=True)["verified"]   # git holds the truth


def test_reading_during_a_run_leaves_the_step_in_flight_alone(repo):
    log = _make(repo, steps=2)
    log.append("model_response", text="in flight")     # step 3, not committed yet
    journal = repo.control / "sessions" / "s" / "journal"
    size = journal.stat().st_size
    reader = S.open_session(repo, "s")                  # e.g. `demoai agent log` meanwhile
    assert reader.steps == 2 and len(reader.events()) == 5
    assert journal.stat().st_size == size               # the writer's journal is not cut
    steps = repo.control / "sessions" / "s" / "steps"
    steps.write_bytes(steps.read_bytes()[:-28])         # even a stale cache is not rewritten
    reader = S.open_session(repo, "s")
    assert reader.steps == 2 and len(reader.events()) == 5 and journal.stat().st_size == size
    log.append("tool_result", exit_code=0, stdout="ok")
    log.commit_step()
    log.close()
    after = S.open_session(repo, "s")
    assert after.steps == 3 and after.verify(from_git=True)["verified"]
    assert [e.type for e in after.events()][-2:] == ["model_response", "tool_result"]


def test_one_writer_per_session_and_names_are_checked(repo):
    log = _make(repo, steps=1)
    with pytest.raises(RefConflict):
        S.open_session(repo, "s", writable=True)
    log.close()
    S.open_session(repo, "s", writable=True).close()
    with pytest.raises(RefConflict):
        S.create_session(repo, "s", agent=AGENT, meta={}, start={})
    with pytest.raises(SessionNotFound):
        S.open_session(repo, "nope")
    with pytest.raises(SessionNotFound):
        S.open_session(repo, "s").step_commit(7)
    from demoai.errors import InvalidRefName
    with pytest.raises(InvalidRefName):
        S.create_session(repo, "../evil", agent=AGENT, meta={}, start={})


def test_kill_mid_step_loses_only_the_step_in_flight(repo, tmp_path):
    """A writer killed while a step is in flight: every committed step survives, the
    partial step vanishes, the session reads back as interrupted, fsck is clean."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from demoai.store.git.repo import Repository
        from demoai.store.sessions import log as S
        repo = Repository({str(repo.root)!r})
        log = S.create_session(repo, "k", agent={AGENT!r}, meta={{}}, start={{"task": "t"}})
        for k in range(1, 4):
            log.append("model_response", text=f"r{{k}}")
            log.commit_step()
        log.append("model_response", text="in flight")
        print("ready", flush=True)
        time.sleep(60)
    """))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    info = {s.name: s for s in S.list_sessions(repo)}["k"]
    assert info.steps == 3 and info.status == "interrupted"
    log = S.open_session(repo, "k")
    assert [e.body.get("text") for e in log.events()][1:] == ["r1", "r2", "r3"]
    assert b"in flight" not in (repo.control / "sessions" / "k" / "journal").read_bytes()
    res = fsck(repo)
    assert res["ok"], res["problems"]
    # the session continues where it stopped
    with S.open_session(repo, "k", writable=True) as w:
        w.append("model_response", text="r4")
        w.commit_step(status="finished")
    assert S.open_session(repo, "k").verify()["events"] == 5


def test_fsck_names_a_session_whose_events_were_rewritten(repo):
    _make(repo, steps=3).close()
    # forge a step whose events do not chain to the recorded head (ref moved by hand)
    from dulwich.objects import Blob, Commit, Tree
    tip = repo.git[repo.ref_value("refs/sessions/s").encode()]
    tree = repo.git[tip.tree]
    inner = repo.git[tree[b".demoai"][1]]
    events = repo.git[inner[b"events"][1]].as_raw_string().replace(b"reply 3", b"reply 9")
    eb = Blob.from_string(events)
    inner2 = Tree()
    for e in inner.iteritems():
        inner2.add(e.path, e.mode, eb.id if e.path == b"events" else e.sha)
    root = Tree()
    for e in tree.iteritems():
        root.add(e.path, e.mode, inner2.id if e.path == b".demoai" else e.sha)
    c = Commit()
    for a in ("author", "committer", "author_time", "commit_time", "author_timezone",
              "commit_timezone", "message", "parents"):
        setattr(c, a, getattr(tip, a))
    c.tree = root.id
    repo.add_objects([eb, inner2, root, c])
    repo.set_ref("refs/sessions/s", c.id.decode(), tip.id.decode(), "forge")
    res = fsck(repo)
    assert not res["ok"] and any("session s" in p for p in res["problems"])


def test_append_is_constant_size_per_step(repo):
    """Each step adds the same number of git objects, whatever the length so far."""
    log = S.create_session(repo, "c", agent=AGENT, meta={}, start={})
    counts = []
    for k in range(60):
        before = sum(1 for _ in repo.git.object_store)
        log.append("model_response", text="same size reply")
        log.commit_step()
        counts.append(sum(1 for _ in repo.git.object_store) - before)
    assert set(counts) == {5}
    ev = _git(repo, "cat-file", "-s", "refs/sessions/c:.demoai/events").stdout.strip()
    assert int(ev) < 400   # only the last step's event, not the history


def test_parse_session_step():
    assert S.parse_session_step("a-b@12") == ("a-b", 12)
    assert S.parse_session_step("plain") == ("plain", None)
    assert S.parse_session_step("x@y") == ("x@y", None)
