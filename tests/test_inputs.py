"""What users and scripts hand DemoAI: spec keys (unknown ones refused with a suggestion),
paths (one rule, :func:`check_path`), and commits of named paths by concurrent writers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from demoai import errors as E
from demoai import porcelain as P
from demoai.objects import Agent, Prompt
from demoai.objects.paths import check_name, check_path
from demoai.objects.textspec import SANDBOX_LIMITS
from demoai.porcelain.status import tree_changes
from demoai.engines.sandbox import SandboxLimits
from demoai.store.git.repo import Repository
from tests.conftest import rows
from tests.helpers.tiny import agent_yaml

DATA = Path(__file__).resolve().parents[1] / "demoai" / "data"
AGENT = agent_yaml(max_steps=2)
PROMPT = (DATA / "qa.prompt.yaml").read_text()


def _sandbox_with(extra: str) -> str:
    return AGENT.replace("sandbox: {backend: namespace,", "sandbox: {backend: namespace, " + extra + ",")


# ------------------------------------------------------------------------------ spec keys

@pytest.mark.parametrize("line, suggestion", [
    ("cpu_second: 1", "sandbox.cpu_seconds"), ("memroy_mb: 16", "sandbox.memory_mb"),
    ("timeout: 1", "sandbox.timeout_s"), ("max_step: 1", "max_steps"),
    ("tempreature: 0.9", "parameters.temperature"), ("sytem: hi", "system"),
])
def test_agent_refuses_unknown_top_level_keys(line: str, suggestion: str) -> None:
    with pytest.raises(E.InvalidArtifact, match=f"did you mean '{suggestion}'") as e:
        Agent.from_text(AGENT + line + "\n", "a.agent.yaml")
    assert e.value.keys == [line.split(":")[0]] and e.value.suggestions
    assert e.value.message.startswith("a.agent.yaml: unknown key")


@pytest.mark.parametrize("key, suggestion", [
    ("cpu_second: 1", "sandbox.cpu_seconds"), ("memroy_mb: 16", "sandbox.memory_mb"),
    ("timeout: 1", "sandbox.timeout_s"), ("pid: 4", "sandbox.pids"),
])
def test_agent_refuses_unknown_sandbox_limits(key: str, suggestion: str) -> None:
    with pytest.raises(E.InvalidArtifact, match=f"unknown key 'sandbox.{key.split(':')[0]}' "
                                                f"\\(did you mean '{suggestion}'\\?\\)"):
        Agent.from_text(_sandbox_with(key))


def test_network_is_refused_everywhere_but_false_in_sandbox() -> None:
    for text in (AGENT + "network: true\n", _sandbox_with("network: true"), _sandbox_with("network: 1")):
        with pytest.raises(E.InvalidArtifact, match="the sandbox has no network"):
            Agent.from_text(text)
    meta = Agent.from_text(_sandbox_with("network: false")).meta
    assert "network" not in meta["sandbox"] and meta["sandbox"]["memory_mb"] == 256
    with pytest.raises(E.SandboxError, match="no network"):
        SandboxLimits.from_dict({"network": True})
    assert SandboxLimits.from_dict({"backend": "namespace", "network": False}) == SandboxLimits()


def test_sandbox_limit_values_are_checked() -> None:
    for old, bad in (("memory_mb: 256", "memory_mb: 1.5"), ("pids: 32", "pids: true"),
                     ("timeout_s: 10", "timeout_s: .nan"), ("pids: 32", "pids: 32, disk_mb: -1")):
        key = bad.split(", ")[-1].split(":")[0]
        with pytest.raises(E.InvalidArtifact, match=f"sandbox.{key} must be"):
            Agent.from_text(AGENT.replace(old, bad))
    with pytest.raises(E.SandboxError, match="did you mean 'memory_mb'"):
        SandboxLimits.from_dict({"memroy_mb": 16})


def test_every_sandbox_limit_can_be_set_by_an_agent() -> None:
    """An agent spec accepts each SandboxLimits field (a new limit must be added to both)."""
    assert {f.name for f in fields(SandboxLimits)} == set(SANDBOX_LIMITS)
    text = _sandbox_with(", ".join(f"{k}: 7" for k in SANDBOX_LIMITS if k not in ("cpu_seconds", "memory_mb",
                                                                                  "pids", "timeout_s")))
    limits = SandboxLimits.from_dict({k: v for k, v in Agent.from_text(text).meta["sandbox"].items()
                                      if k != "backend"})
    assert limits.memory_mb == 256 and limits.output_bytes == 7


def test_backend_options_are_checked_per_backend() -> None:
    ok = Agent.from_text(AGENT.replace("model: smollm2", "model: smollm2\nbackend: {threads: 1, n_ctx: 256}"))
    assert ok.meta["backend"] == {"threads": 1, "n_ctx": 256}
    Agent.from_text(AGENT.replace("model: smollm2", "model: openai:x\nbackend: {base_url: 'http://h/v1'}"))
    cases = {
        "backend: {thread: 2}": "did you mean 'backend.threads'",
        "backend: {name: llamacpp, base_url: 'http://h'}": "'backend.base_url': an option of the openai backend",
        "backend: {name: llama}": "did you mean 'llamacpp'",
        "backend: {n_ctx: 0}": "backend.n_ctx must be a positive int",
        "backend: {n_gpu_layers: 9}": "unknown key 'backend.n_gpu_layers'",
    }
    for line, msg in cases.items():
        with pytest.raises(E.InvalidArtifact, match=msg.replace("(", "\\(")):
            Agent.from_text(AGENT.replace("model: smollm2", "model: smollm2\n" + line))


def test_prompt_refuses_unknown_keys() -> None:
    with pytest.raises(E.InvalidArtifact, match="unknown key 'tempreature' \\(did you mean 'parameters.temperature'"):
        Prompt.from_text(PROMPT + "tempreature: 0.9\n")
    with pytest.raises(E.InvalidArtifact, match="unknown key 'parameters.tempreature' "
                                                "\\(did you mean 'parameters.temperature'"):
        Prompt.from_text(PROMPT.replace("top_p: 1.0", "tempreature: 0.9"))


def test_repeated_keys_are_refused() -> None:
    with pytest.raises(E.InvalidArtifact, match="duplicate key 'memory_mb'"):
        Agent.from_text(AGENT.replace("pids: 32", "pids: 32, memory_mb: 4096"))
    with pytest.raises(E.InvalidArtifact, match="duplicate key 'template'"):
        Prompt.from_text(PROMPT + "template: other\n")


def test_shipped_samples_and_test_agents_parse() -> None:
    agent = Agent.from_text((DATA / "files.agent.yaml").read_text())
    assert agent.meta["sandbox"]["cpu_seconds"] == 5 and agent.meta["max_steps"] == 4
    assert Prompt.from_text((DATA / "qa.prompt.yaml").read_text()).meta["variables"] == ["question"]
    Agent.from_text(agent_yaml(3))


def test_cli_refuses_unknown_keys_in_one_line(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"a.agent.yaml": _sandbox_with("memroy_mb: 16"), "p.prompt.yaml": PROMPT + "tempreature: 0.9\n"})
    for path, msg in (("a.agent.yaml", "unknown key 'sandbox.memroy_mb' (did you mean 'sandbox.memory_mb'?)"),
                      ("p.prompt.yaml", "unknown key 'tempreature' (did you mean 'parameters.temperature'?)")):
        res = cli("add", path, code=1)
        assert "Traceback" not in res.output and msg in res.output
        assert res.output.count("error:") == 1
    assert json.loads(cli("status", "--json").output)["staged"] == []


# ------------------------------------------------------------------------------ paths

@pytest.mark.parametrize("bad", [
    "", "a\\b", "a//b", "/abs", "a/", "./a", "a/./b", "a/../b", "..", "C:/x", "c:", "x/D:y",
    ".demoai", ".demoai/index.json", "a/.DemoAI/b", ".git/config", "a/.Git", ".git.", ".demoai ",
    "a\0b", "a\nb", "a\x1b[31mb", "x/\udcff", "n" * 256,
])
def test_check_path_refuses(bad: str) -> None:
    with pytest.raises(E.UnsafePath):
        check_path(bad)


def test_check_path_and_name_accept_plain_paths() -> None:
    for good in ("a", "data/train.jsonl", "é/ü.jsonl", ".gitignore", "a/...", "x" * 255, "a b/run:1.jsonl"):
        assert check_path(good) == good
    assert check_name("train.jsonl") == "train.jsonl"
    for bad in ("a/b", "", ".", "..", ".DEMOAI", "a\\b", "C:"):
        with pytest.raises(E.UnsafePath):
            check_name(bad)
    assert issubclass(E.UnsafePath, E.InvalidArtifact) and E.ERROR_CODES["unsafe_path"] is E.UnsafePath


def test_add_refuses_a_backslash_and_missing_files_cleanly(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"data/a\\b.jsonl": rows(2), "ok/x.jsonl": rows(1), "ok/y\\z.jsonl": rows(1)})
    for args in (["data/a\\b.jsonl"], [str(tmp_dir / "data" / "a\\b.jsonl")], ["ok"]):
        res = cli("add", *args, code=1)
        assert "Traceback" not in res.output and "backslash is not allowed" in res.output
    res = cli("add", "data/missing.jsonl", code=1)
    assert "no such file or directory" in res.output and "Traceback" not in res.output
    assert json.loads(cli("status", "--json").output)["staged"] == []   # nothing half-added
    repo = Repository(tmp_dir)
    with pytest.raises(E.UnsafePath):
        P.add(repo, ["data/a\\b.jsonl"])
    with pytest.raises(E.UnsafePath):
        P.add(repo, [".demoai/index.json"], kind="dataset")


# ------------------------------------------------------------------------------ commit PATHS

def test_commit_paths_leaves_other_staged_changes_staged(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"a.jsonl": rows(3), "b.jsonl": rows(4), "c.jsonl": rows(5)})
    P.add(repo, ["a.jsonl", "b.jsonl"])
    first = P.commit(repo, "one", paths=["a.jsonl"])
    assert set(repo.tree_entries(first)) == {"a.jsonl"}
    staged = {c["path"]: c["change"] for c in P.status(repo)["staged"]}
    assert staged == {"b.jsonl": "added"}
    # a path is taken as it is now, staged or not; a new file is added
    tmp_dir.gen({"a.jsonl": rows(6)})
    second = P.commit(repo, "two", paths=["a.jsonl", "c.jsonl"])
    changes = tree_changes(repo.tree_entries(first), repo.tree_entries(second))
    assert changes == [{"path": "a.jsonl", "change": "modified"}, {"path": "c.jsonl", "change": "added"}]
    assert repo.artifact_at("HEAD", "a.jsonl").rows == 6
    assert {c["path"] for c in P.status(repo)["staged"]} == {"b.jsonl"}
    assert P.status(repo)["unstaged"] == []
    # a tracked path gone from disk is deleted; the same paths again: nothing to commit
    (tmp_dir / "c.jsonl").unlink()
    third = P.commit(repo, "three", paths=["c.jsonl"])
    assert set(repo.tree_entries(third)) == {"a.jsonl"}
    with pytest.raises(E.NothingToCommit):
        P.commit(repo, "again", paths=["a.jsonl"])
    with pytest.raises(E.PathNotFound):
        P.commit(repo, "none", paths=["nowhere.jsonl"])
    assert P.commit(repo, "rest") and set(repo.tree_entries(repo.head_commit())) == {"a.jsonl", "b.jsonl"}


def test_cli_commit_paths_and_only(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"d/a.jsonl": rows(2), "d/b.jsonl": rows(3), "e.jsonl": rows(1)})
    cli("add", "e.jsonl")
    assert "[main " in cli("commit", "d", "-m", "folder").output
    assert "[main " in cli("commit", "--only", "e.jsonl", "-m", "e").output
    log = json.loads(cli("log", "--json").output)
    assert [e["message"].strip() for e in log] == ["e", "folder"]
    assert "--only needs the PATHS" in cli("commit", "--only", "-m", "x", code=2).output
    res = cli("commit", "d\\a.jsonl", "-m", "x", code=1)
    assert "backslash is not allowed" in res.output and "Traceback" not in res.output


_WORKER = """
import json, subprocess, sys
from pathlib import Path
root, me, rounds, demoai = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for r in range(rounds):
    rows = [{"id": i, "writer": me, "round": r} for i in range(me * 10 + r + 1)]
    (root / f"w{me}.jsonl").write_text("".join(json.dumps(x) + "\\n" for x in rows))
    subprocess.run([demoai, "commit", f"w{me}.jsonl", "-m", f"writer {me} round {r}"], cwd=root,
                   check=True, capture_output=True)
"""


def test_concurrent_path_commits_each_change_exactly_their_path(repo: Repository, tmp_dir) -> None:
    """4 processes commit their own file 3 times each, at once, beside a staged change
    nobody commits: 12 commits, each changing exactly its writer's file, with its message."""
    tmp_dir.gen({"base.jsonl": rows(1), "staged.jsonl": rows(2)})
    P.add(repo, ["base.jsonl"])
    base = P.commit(repo, "base")
    P.add(repo, ["staged.jsonl"])
    demoai = str(Path(sys.executable).parent / "demoai")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    workers, rounds = 4, 3
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_dir), str(i), str(rounds), demoai],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(workers)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()[-2000:]
    repo = Repository(tmp_dir)
    chain, c = [], repo.head_commit()
    while c != base:
        info = repo.commit_info(c)
        chain.append(info)
        c = info.parents[0]
    assert len(chain) == workers * rounds
    seen = set()
    for info in chain:
        parent = repo.tree_entries(info.parents[0])
        changes = tree_changes(parent, repo.tree_entries(info.id))
        me, r = (int(x) for x in info.message.split()[1::2])
        assert [ch["path"] for ch in changes] == [f"w{me}.jsonl"], info.message
        assert repo.artifact_at(info.id, f"w{me}.jsonl").rows == me * 10 + r + 1, info.message
        seen.add((me, r))
    assert seen == {(i, r) for i in range(workers) for r in range(rounds)}
    assert "staged.jsonl" not in repo.tree_entries(repo.head_commit())
    st = P.status(repo)
    assert [c["path"] for c in st["staged"]] == ["staged.jsonl"] and st["unstaged"] == []
