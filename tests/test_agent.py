"""The agent runtime end to end: SmolLM2 (llama.cpp, grammar-constrained) driving tools in
the namespace sandbox, every step committed; fork, continue, diff and the three replay modes.

Escape attempts go through the agent loop with a *scripted* model (exact commands are
needed to attack the sandbox; a 135M model would not type them): the only stand-in in this
file, and it sits where replay itself feeds recorded responses.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from demoai.registry.defaults import default_gguf_path
from demoai.porcelain import add, commit, fsck, init
from demoai.store.sessions import log as S
from demoai.runtime.agent import RunSettings, _loop, continue_session, run_agent
from demoai.engines.llm import ChatResult
from demoai.runtime.replay import diff_sessions, replay_recorded, replay_reexecute
from demoai.runtime.tools import parse_call, tool_schema
from demoai.store.blobs.chunks import compute_manifest
from tests.helpers.tiny import TASK, agent_yaml

pytest.importorskip("llama_cpp")
if subprocess.run(["which", "bwrap"], capture_output=True).returncode:
    pytest.skip("bubblewrap is not installed", allow_module_level=True)

AGENT = agent_yaml(max_steps=3)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory):
    """One real run shared by the read-side tests: (repo, result)."""
    root = tmp_path_factory.mktemp("agentrepo")
    repo = init(root)
    (root / "agents").mkdir()
    (root / "agents" / "t.agent.yaml").write_text(AGENT)
    add(repo, [root / "agents" / "t.agent.yaml"])
    commit(repo, "agent")
    res = run_agent(repo, "agents/t.agent.yaml", task=TASK, name="run1")
    yield repo, res
    repo.close()


def test_run_records_a_pinned_hash_chained_session(ran):
    repo, res = ran
    assert res["status"] == "finished" and 1 <= res["steps"] <= 3
    log = S.open_session(repo, "run1")
    events = log.events()
    start = events[0].body
    assert events[0].type == "run_start"
    assert start["model"]["digest"] == compute_manifest(default_gguf_path()).digest
    assert start["model"]["chat_template_digest"].startswith("blake3:")
    assert start["agent"]["digest"] == repo.artifact_at("HEAD", "agents/t.agent.yaml").digest
    assert start["sandbox"]["backend"] == "namespace" and start["seed"] == 3
    responses = [e for e in events if e.type == "model_response"]
    assert len(responses) == res["steps"]
    for r in responses:                      # grammar-constrained: every reply is a valid call
        parse_call(r.body["text"], start["tools"])
        assert r.body["record"]["model_digest"] == start["model"]["digest"]
        assert r.body["completion_tokens"] > 0
    # one commit per step on the session ref, readable by git
    gd = str(repo.control / "git")
    n = len(subprocess.run(["git", "--git-dir", gd, "rev-list", "refs/sessions/run1"],
                           capture_output=True, text=True).stdout.split())
    assert n >= res["steps"] + 1
    assert subprocess.run(["git", "--git-dir", gd, "fsck", "--full"], capture_output=True).returncode == 0
    assert fsck(repo)["ok"]
    assert replay_recorded(repo, "run1")["verified"]


def test_fork_continue_and_diff(ran):
    repo, res = ran
    S.fork_session(repo, "run1@1", "fork1", overrides={"instruction": "Now write bye into bye.txt."}).close()
    out = continue_session(repo, "fork1", max_steps=1)
    assert out["steps"] == 2
    fork = S.open_session(repo, "fork1").events()
    src = S.open_session(repo, "run1").events(1)
    assert [e.id for e in fork[:len(src)]] == [e.id for e in src]     # history shared, not copied
    resume = next(e for e in fork if e.type == "resume")
    assert resume.body["restored_files"] == len(S.open_session(repo, "run1").workspace_at(1))
    req = [e for e in fork if e.type == "model_request"][-1]
    assert {"role": "user", "content": "Now write bye into bye.txt."} in req.body["messages"]
    d = diff_sessions(repo, "run1", "fork1")
    assert d["shared_events"] == len(src) and not d["identical"]
    assert d["first_divergence"]["b"]["type"] == "fork"


def test_reexecute_matches_a_deterministic_run(ran):
    repo, _ = ran
    rex = replay_reexecute(repo, "run1")
    assert rex["first_divergence"] is None and rex["identical"]


class Scripted:
    """Replies given in advance, in order (see the module docstring)."""

    name, model_digest, chat_template_digest, n_ctx = "scripted", "blake3:" + "0" * 64, "blake3:" + "1" * 64, 2048

    def __init__(self, calls: list[dict]) -> None:
        self.calls = list(calls)

    def chat(self, messages, *, params=None, json_schema=None, on_token=None) -> ChatResult:
        text = json.dumps(self.calls.pop(0))
        return ChatResult(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1,
                          timings={}, record={"backend": "scripted"})


def _scripted_session(repo, name: str, calls: list[dict], tmp_path: Path, limits: dict | None = None) -> dict:
    from demoai.engines.sandbox import open_sandbox, SandboxLimits
    sb_settings = {"backend": "namespace", "cpu_seconds": 3, "memory_mb": 128, "pids": 16, "timeout_s": 5,
                   **(limits or {})}
    s = RunSettings(agent={"digest": "blake3:" + "2" * 64, "text": AGENT}, task="t", system="s",
                    tools=["shell", "python", "write_file", "read_file", "finish"], params={}, seed=0,
                    max_steps=len(calls), sandbox=sb_settings, model={"backend": "scripted"})
    backend = Scripted(calls)
    log = S.create_session(repo, name, agent=s.agent["digest"], meta={}, start=s.record(backend))
    limits_obj = SandboxLimits.from_dict({k: v for k, v in sb_settings.items() if k != "backend"})
    with open_sandbox("namespace", limits_obj) as sb:
        return _loop(repo, log, backend, sb, s, [], [{"role": "user", "content": "t"}], {}, None)


def test_reexecute_reports_the_first_step_that_differs(repo, tmp_path):
    calls = [{"tool": "write_file", "args": {"path": "a.txt", "content": "alpha"}},
             {"tool": "shell", "args": {"cmd": "cat a.txt; date"}},
             {"tool": "python", "args": {"code": "import os; print(os.urandom(8).hex())"}},
             {"tool": "shell", "args": {"cmd": "ls"}}]
    _scripted_session(repo, "rx", calls, tmp_path)
    rex = replay_reexecute(repo, "rx")
    same = [r["same"] for r in rex["steps"]]
    assert same == [True, True, False, True]            # `date` is masked; random bytes are not
    assert rex["first_divergence"]["step"] == 3 and rex["first_divergence"]["fields"] == ["stdout"]
    # from a later step, with the workspace restored as it was there
    assert [r["step"] for r in replay_reexecute(repo, "rx", from_step=2)["steps"]] == [3, 4]


ESCAPES = {
    "network": {"tool": "python", "args": {"code": "import socket; socket.create_connection(('1.1.1.1', 53), 2)"}},
    "write_outside": {"tool": "shell", "args": {"cmd": "echo x > /usr/evil || echo x > /etc/evil"}},
    "secrets": {"tool": "shell", "args": {"cmd": "cat /root/.ssh/id_rsa /etc/shadow"}},
    "fork_bomb": {"tool": "python", "args": {"code": "import os\nwhile True: os.fork()"}},
    "memory_bomb": {"tool": "python", "args": {"code": "x = bytearray(1 << 31)"}},
    "infinite_loop": {"tool": "python", "args": {"code": "while True: pass"}},
}


def test_escape_attempts_are_contained_and_the_session_survives(repo, tmp_path):
    calls = list(ESCAPES.values()) + [{"tool": "shell", "args": {"cmd": "echo still-alive > ok.txt; cat ok.txt"}},
                                      {"tool": "finish", "args": {"answer": "done"}}]
    res = _scripted_session(repo, "esc", calls, tmp_path)
    assert res["status"] == "finished"
    results = [e.body for e in S.open_session(repo, "esc").events() if e.type == "tool_result"]
    for name, r in zip(ESCAPES, results):
        assert r["exit_code"] != 0 or r["limit"] or r["timed_out"], (name, r)
    by = dict(zip(ESCAPES, results))
    assert by["memory_bomb"]["limit"] == "memory" or "MemoryError" in by["memory_bomb"]["stderr"]
    assert by["infinite_loop"]["limit"] in ("cpu", "timeout")
    assert results[-1]["stdout"] == "still-alive\n" and results[-1]["files"] == {"ok.txt": results[-1]["files"]["ok.txt"]}
    assert not Path("/usr/evil").exists() and not Path("/etc/evil").exists()
    assert replay_recorded(repo, "esc")["verified"] and fsck(repo)["ok"]


def test_context_overflow_is_recorded_and_the_session_fails_cleanly(repo, tmp_path):
    (tmp_path / "big.agent.yaml").write_text(AGENT.replace("model: smollm2", "model: smollm2\nbackend: {n_ctx: 256}")
                                             .replace("then finish.", "then finish. " + "Be careful. " * 200))
    add(repo, [tmp_path / "big.agent.yaml"])
    commit(repo, "big")
    from demoai.errors import ContextOverflow  # noqa: F401  (raised inside, recorded as an event)
    res = run_agent(repo, "big.agent.yaml", task=TASK, name="big")
    assert res["status"] == "failed"
    err = [e for e in S.open_session(repo, "big").events() if e.type == "error"]
    assert err and err[0].body["code"] == "context_overflow"


def test_cli_agent_commands(ran, cli, monkeypatch):
    repo, res = ran
    monkeypatch.chdir(repo.root)
    sessions = json.loads(cli("agent", "sessions", "--json").output)
    assert "run1" in {s["name"] for s in sessions}
    tl = json.loads(cli("agent", "log", "run1", "--json").output)
    assert tl["events"][0]["type"] == "run_start" and tl["session"]["steps"] == res["steps"]
    step1 = json.loads(cli("agent", "show", "run1@1", "--json").output)
    assert {e["type"] for e in step1["events"]} >= {"model_request", "model_response", "tool_call"}
    rec = json.loads(cli("agent", "replay", "run1", "--mode", "recorded", "--json").output)
    assert rec["verified"]
    cli("fork", "run1@1", "clifork", "--set", "instruction=Say bye.", "--set", "temperature=0.5")
    fork = S.open_session(repo, "clifork").events()[-1].body
    assert fork["overrides"] == {"instruction": "Say bye.", "temperature": 0.5}
    d = json.loads(cli("agent", "diff", "run1", "clifork", "--json").output)
    assert d["first_divergence"]["b"]["type"] == "fork"
    assert "no session named" in cli("agent", "log", "nope", code=1).output
    assert tool_schema(["finish"])["properties"]["tool"] == {"const": "finish"}


def test_reexecute_in_docker_sees_what_the_namespace_run_saw(repo, tmp_path, docker_url, monkeypatch):
    """The same recorded session re-executed on the other backend: same observations."""
    calls = [{"tool": "write_file", "args": {"path": "d/a.txt", "content": "alpha"}},
             {"tool": "shell", "args": {"cmd": "cat d/a.txt && id -u && ls /workspace"}},
             {"tool": "python", "args": {"code": "import socket\ntry:\n  socket.create_connection(('1.1.1.1', 53), 2)\n"
                                                 "except OSError:\n  print('no network')"}}]
    _scripted_session(repo, "dk", calls, tmp_path)
    monkeypatch.setenv("DOCKER_HOST", docker_url)
    rex = replay_reexecute(repo, "dk", sandbox="docker")
    assert [r["step"] for r in rex["steps"]] == [1, 2, 3]
    assert rex["identical"], rex["first_divergence"]


def test_live_replay_records_a_new_linked_session(ran):
    repo, _ = ran
    from demoai.runtime.replay import replay_live
    res = replay_live(repo, "run1", 1, max_steps=1)
    new = S.open_session(repo, res["new_session"])
    assert new.manifest.parent["session"] == "run1" and new.manifest.parent["step"] == 1
    assert new.steps == 2 and new.verify()["verified"]
    ev = new.events()
    assert [e.id for e in ev[:len(S.open_session(repo, "run1").events(1))]] == \
        [e.id for e in S.open_session(repo, "run1").events(1)]
    assert sum(e.type == "model_response" for e in ev) == 2        # one recorded, one new call


def test_output_cut_off_by_max_tokens_is_recorded_and_the_run_goes_on(repo, tmp_path):
    (tmp_path / "short.agent.yaml").write_text(AGENT.replace("max_tokens: 100", "max_tokens: 4")
                                               .replace("max_steps: 3", "max_steps: 2"))
    add(repo, [tmp_path / "short.agent.yaml"])
    commit(repo, "short")
    res = run_agent(repo, "short.agent.yaml", task=TASK, name="short")
    assert res["status"] == "max_steps" and res["steps"] == 2       # no finish call: not "finished"
    ev = S.open_session(repo, "short").events()
    bad = [e for e in ev if e.type == "model_response"]
    assert len(bad) == 2 and all(e.body["invalid"] and e.body["finish_reason"] == "length" for e in bad)
    assert sum(e.type == "error" and e.body["where"] == "tool_call" for e in ev) == 2
    second = [e for e in ev if e.type == "model_request"][1]
    assert second.body["messages"][0]["content"].startswith("Error: ")
