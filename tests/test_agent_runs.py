"""Agent runs tell the truth (issue 12).

- the shipped sample agent runs as shipped, from the working tree or committed, and a model
  that is not there says what to do;
- the grammar's JSON strings admit no raw control character, and a reply cut at
  ``max_tokens`` is recorded with its usage, shown live and fed back to the model;
- a run that hits ``max_steps`` without calling finish is not "finished": its own status
  ``max_steps`` and exit status 3;
- ``agent sessions`` never cuts a session name, ``agent show`` and ``agent log`` read whole,
  without Python reprs or ``None``;
- ``demoai demo DIR`` runs under one folder, says where everything is, and says plainly
  whether the model did the task.

Real SmolLM2 (llama.cpp, 1 thread, few tokens) and the real bwrap sandbox. Where exact
replies are needed (a run that never calls finish, long tool arguments) a scripted model
drives the same agent loop, as in test_agent.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from demoai.cli import main
from demoai.engines.llm import ChatResult
from demoai.porcelain import agent as A
from demoai.registry.defaults import default_gguf_path, sample_data_dir
from demoai.runtime.agent import RunSettings, _loop
from demoai.runtime.tools import tool_schema
from demoai.store.sessions import log as S
from tests.helpers.tiny import agent_yaml

pytest.importorskip("llama_cpp")
if shutil.which("bwrap") is None:
    pytest.skip("bubblewrap is not installed", allow_module_level=True)

DEMOAI = str(Path(sys.executable).parent / "demoai")
TASK = "Create hello.txt containing hello"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMOAI_LLM_THREADS", "1")


def _invoke(*args: str) -> Result:
    """``demoai ARGS`` in-process, stdout and stderr apart; the exit code is the caller's."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _run(args: list[str], cwd: Path, columns: int = 80) -> subprocess.CompletedProcess:
    """``demoai ARGS`` as a real process in a terminal ``columns`` wide."""
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50"}
    env.pop("DEMOAI_DEBUG", None)
    return subprocess.run([DEMOAI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


class Scripted:
    """Replies given in advance, in order (only where exact replies are needed)."""

    name, model_digest, chat_template_digest, n_ctx = "scripted", "blake3:" + "0" * 64, "blake3:" + "1" * 64, 2048

    def __init__(self, calls: list[dict]) -> None:
        self.calls = list(calls)

    def chat(self, messages, *, params=None, json_schema=None, on_token=None) -> ChatResult:
        return ChatResult(text=json.dumps(self.calls.pop(0)), finish_reason="stop", prompt_tokens=1,
                          completion_tokens=1, timings={}, record={"backend": "scripted"})


def _scripted(repo, name: str, calls: list[dict], max_steps: int | None = None, events: list | None = None) -> dict:
    from demoai.engines.sandbox import SandboxLimits, open_sandbox
    sb = {"backend": "namespace", "cpu_seconds": 3, "memory_mb": 128, "pids": 16, "timeout_s": 5}
    s = RunSettings(agent={"digest": "blake3:" + "2" * 64, "text": agent_yaml()}, task="t", system="s",
                    tools=["shell", "python", "write_file", "read_file", "finish"], params={}, seed=0,
                    max_steps=max_steps or len(calls), sandbox=sb, model={"backend": "scripted"})
    backend = Scripted(calls)
    log = S.create_session(repo, name, agent=s.agent["digest"], meta={"agent": "agents/files.agent.yaml"},
                           start=s.record(backend))
    limits = SandboxLimits.from_dict({k: v for k, v in sb.items() if k != "backend"})
    on_event = (lambda kind, data: events.append(kind)) if events is not None else None
    with open_sandbox("namespace", limits) as box:
        return _loop(repo, log, backend, box, s, [], [{"role": "user", "content": "t"}], {}, on_event)


# --- 1. the sample agent runs as shipped; a missing model says what to do -------------------
def test_the_sample_agent_runs_as_shipped_from_the_working_tree_and_committed(tmp_dir):
    _invoke("init")
    (tmp_dir / "agents").mkdir()
    shutil.copy(sample_data_dir() / "files.agent.yaml", tmp_dir / "agents" / "files.agent.yaml")
    # before any commit: the file in the working tree runs (README's tour, step by step)
    first = _invoke("agent", "run", "agents/files.agent.yaml", "--task", TASK, "--max-steps", "1", "--name", "wt")
    assert first.exit_code in (0, 3), first.output
    assert "error" not in first.stdout
    _invoke("add", "agents/files.agent.yaml")
    _invoke("commit", "-m", "agent")
    second = _invoke("agent", "run", "agents/files.agent.yaml", "--task", TASK, "--max-steps", "1", "--name", "c")
    assert second.exit_code in (0, 3), second.output
    with _repo(tmp_dir) as repo:
        wt = A.session_events(repo, "wt")[0]
        committed = A.session_events(repo, "c")[0]
        assert wt.body["agent"]["worktree"] is True and wt.body["agent"]["commit"] is None
        assert committed.body["agent"]["commit"] == repo.head_commit()
        assert wt.body["agent"]["digest"] == committed.body["agent"]["digest"]
        assert committed.body["model"]["source"] == {"builtin": "smollm2"}


def _repo(path: Path):
    from demoai.porcelain import open_repository
    return open_repository(path, search=False)


AGENT_ON_A_FILE = agent_yaml().replace("model: smollm2", "model: models/smollm2.gguf")


def test_a_model_that_is_not_committed_says_what_to_do(tmp_dir):
    _invoke("init")
    tmp_dir.gen({"agents/a.agent.yaml": AGENT_ON_A_FILE})

    def refused() -> str:
        r = _invoke("agent", "run", "agents/a.agent.yaml", "--task", "x")
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1, r.stderr
        for hint in ("model: smollm2", "--model smollm2", "demoai add models/smollm2.gguf"):
            assert hint in r.stderr, (hint, r.stderr)
        return r.stderr

    assert "model models/smollm2.gguf is not committed (the repository has no commits yet)" in refused()
    _invoke("add", "agents/a.agent.yaml")
    _invoke("commit", "-m", "agent")
    assert "model models/smollm2.gguf is not committed at HEAD" in refused()
    tmp_dir.gen({"models/smollm2.gguf": b"GGUF not really"})
    assert "models/smollm2.gguf is in the working tree but not committed" in refused()
    # the override named in the message works
    ok = _invoke("agent", "run", "agents/a.agent.yaml", "--task", "x", "--model", "smollm2", "--max-steps", "1")
    assert ok.exit_code in (0, 3), ok.output


# --- 2. the grammar; a reply cut at max_tokens ----------------------------------------------
@pytest.fixture(scope="module")
def smol():
    from demoai.engines.llm.llamacpp import LlamaCppBackend
    b = LlamaCppBackend(default_gguf_path(), threads=1, n_ctx=512)
    yield b
    b.close()


@pytest.mark.parametrize("schema", [
    tool_schema(["write_file", "finish"]),
    {"type": "object", "properties": {"note": {"type": "string", "maxLength": 40}}, "required": ["note"]},
], ids=["tool-call", "llama.cpp-converter"])
def test_grammar_strings_admit_no_raw_control_character(smol, schema):
    """Even a model pushed hard towards line breaks writes none raw inside a JSON string."""
    import numpy as np
    from llama_cpp import LogitsProcessorList
    llm = smol.llm
    push = np.zeros(llm.n_vocab(), dtype=np.float32)
    for tok in range(llm.n_vocab()):
        if any(ch < " " for ch in llm.detokenize([tok]).decode("utf-8", "replace")):
            push[tok] = 50.0
    llm.reset()
    out = b""
    prompt = llm.tokenize(b"Write a four-line poem into poem.txt.\n", add_bos=False)
    for i, tok in enumerate(llm.generate(prompt, temp=0.0, grammar=smol.grammar(schema),
                                         logits_processor=LogitsProcessorList([lambda ids, lg: lg + push]))):
        if tok == llm.token_eos() or i >= 40:
            break
        out += llm.detokenize([tok])
    text = out.decode("utf-8", "replace")
    assert text.startswith("{") and '"' in text
    assert not any(ch < " " for ch in text), text
    if tok == llm.token_eos():
        json.loads(text)


CUT = agent_yaml(max_steps=2).replace("max_tokens: 100", "max_tokens: 4")


def test_a_reply_cut_at_max_tokens_is_recorded_shown_and_fed_back(tmp_dir):
    _invoke("init")
    tmp_dir.gen({"agents/cut.agent.yaml": CUT})
    r = _invoke("agent", "run", "agents/cut.agent.yaml", "--task", TASK, "--name", "cut")
    assert r.exit_code == 3, r.output                        # stopped at max_steps, not "finished"
    live = r.stderr
    assert "step 1 model (not a valid tool call)" in live and "step 2 model" in live, live
    assert "step 1 error the reply stopped at the max_tokens limit (4 tokens)" in live, live
    assert "max_steps" in r.stdout and "without the model calling finish" in r.stdout, r.stdout
    with _repo(tmp_dir) as repo:
        ev = A.session_events(repo, "cut")
    cut = [e.body for e in ev if e.type == "model_response"]
    assert [c["completion_tokens"] for c in cut] == [4, 4] and all(c["prompt_tokens"] > 0 for c in cut)
    assert all(c["invalid"] and c["finish_reason"] == "length" and c["record"]["model_digest"] for c in cut)
    told = [e.body for e in ev if e.type == "model_request"][1]["messages"][0]["content"]
    assert told.startswith("Error: your reply was cut off before its JSON was complete"), told
    log = _invoke("agent", "log", "cut")
    assert log.exit_code == 0 and "None" not in log.output and "{'" not in log.output, log.output
    assert "4 tokens" in log.output and "cut at max_tokens, not a tool call" in log.output
    show = _invoke("agent", "show", "cut@1")
    assert "tokens: prompt" in show.output and "completion 4" in show.output, show.output
    assert "valid tool call: no: nothing was run" in show.output
    assert "told the model: Error: your reply was cut off" in show.output


# --- 3. max_steps is its own status ---------------------------------------------------------
def test_a_run_that_never_calls_finish_ends_max_steps_not_finished(repo):
    events: list[str] = []
    res = _scripted(repo, "loop", [{"tool": "shell", "args": {"cmd": "ls"}}] * 2, events=events)
    assert res["status"] == "max_steps" and res["steps"] == 2
    end = A.session_events(repo, "loop")[-1].body
    assert end["type"] == "run_end" and end["status"] == "max_steps" and end["reason"] == "max_steps"
    assert A.session_info(repo, "loop").status == "max_steps"
    assert events[-1] == "stopped"
    done = _scripted(repo, "done", [{"tool": "shell", "args": {"cmd": "ls"}},
                                    {"tool": "finish", "args": {"answer": "ok"}}])
    assert done["status"] == "finished" and A.session_info(repo, "done").status == "finished"
    assert A.replay(repo, "loop").verified


def test_agent_run_help_documents_the_exit_codes():
    text = " ".join(_invoke("agent", "run", "--help").output.split())
    assert "3 the run stopped at max_steps" in text and "0 the model called finish" in text
    assert "working tree" in text


# --- 4. sessions, show, log read whole ------------------------------------------------------
LONG_NAMES = ["files-20261205-225911-ab12", "files-20261205-225911-ab13", "files-20261205-225911-ab12-fork-1"]


def test_sessions_never_cut_a_session_name(repo):
    for name in LONG_NAMES[:2]:
        _scripted(repo, name, [{"tool": "finish", "args": {"answer": "ok"}}])
    S.fork_session(repo, f"{LONG_NAMES[0]}@1", LONG_NAMES[2], overrides={"instruction": "again"}).close()
    for columns in (120, 80, 60, 40, 30):
        r = _run(["agent", "sessions"], repo.root, columns)
        assert r.returncode == 0, r.stderr
        words = r.stdout.split()
        for name in LONG_NAMES:
            assert name in words, (columns, r.stdout)
        assert f"{LONG_NAMES[0]}@1" in words and "agents/files.agent.yaml" in r.stdout.replace(",", " ").split()
        assert "…" not in r.stdout


CONTENT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog number {i}" for i in range(14)) \
    + "\nsupercalifragilisticexpialidocious-LASTWORD"


def test_show_renders_a_step_whole_and_readably(repo):
    _scripted(repo, "notes", [{"tool": "write_file", "args": {"path": "notes.txt", "content": CONTENT}},
                              {"tool": "finish", "args": {"answer": "wrote notes.txt"}}])
    for columns in (80, 50):
        r = _run(["agent", "show", "notes@1"], repo.root, columns)
        assert r.returncode == 0, r.stderr
        text = r.stdout
        assert "{'" not in text and "': '" not in text and "None" not in text, text
        words = text.split()
        for w in CONTENT.split():                       # every word whole, none cut
            assert w in words, (w, text)
        assert "  tool_call  write_file" in text and "    path: notes.txt" in text
        assert "exit code: 0" in text and "files changed: notes.txt (written)" in text
        assert f"{len(CONTENT.encode())} B  notes.txt" in text          # workspace with sizes
    log = _run(["agent", "log", "notes"], repo.root, 100).stdout
    assert "{'" not in log and "None" not in log, log
    assert 'write_file path="notes.txt" content="line 0:' in log
    assert "finished: the model called finish" in log


# --- 5. the main job ------------------------------------------------------------------------
def test_demo_runs_under_one_folder_says_where_and_what_the_model_did(tmp_path):
    # a real process, as users run it: the demo serves a hub in a thread and loads a model
    where = tmp_path / "tour"
    env = {**os.environ, "COLUMNS": "120", "DEMOAI_LLM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "demoai.cli", "demo", str(where)], env=env,
                       capture_output=True, text=True, timeout=600)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert f"demo repository  {where / 'repo'}  (kept" in text
    assert f"its clone        {where / 'clone'}  (removed" in text and f"hub data         {where / 'hub'}  (removed" in text
    assert (where / "repo" / ".demoai").is_dir() and not (where / "clone").exists() and not (where / "hub").exists()
    assert "finished (max_steps)" not in text
    assert f"browse it in the terminal: cd {where / 'repo'} && demoai tui" in text
    assert "INFO:" not in text           # no library's log lines in the tour
    with _repo(where / "repo") as repo:
        for name, path, word in (("demo-run", "hello.txt", "hello"), ("demo-fork", "bye.txt", "bye")):
            info = A.session_info(repo, name)
            files = A.workspace_files(repo, name)
            did = info.status == "finished" and word in files.get(path, b"").decode().lower()
            verdict = "the model did the task" if did else "the model did not do the task"
            assert text.count(verdict) >= 1, (name, text[-4000:])
            assert f"session {name}: {info.status} after {info.steps} step(s)" in text
    again = subprocess.run([sys.executable, "-m", "demoai.cli", "demo", "--dir", str(where)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exist" in again.stdout + again.stderr
