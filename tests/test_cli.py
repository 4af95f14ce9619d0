"""The CLI through click's CliRunner: output shapes, --json, and one-line typed errors."""
from __future__ import annotations

import json

from tests.conftest import rows

PROMPT = "template: 'Q: {{q}}'\nparameters: {temperature: 0.2}\n"


def test_cli_round_trip(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"data/train.jsonl": rows(20), "p.prompt.yaml": PROMPT})
    out = json.loads(cli("add", "data/train.jsonl", "--key", "id", "--json").output)
    assert out[0]["kind"] == "dataset" and out[0]["status"] == "added"
    cli("add", "p.prompt.yaml")
    st = json.loads(cli("status", "--json").output)
    assert {c["path"] for c in st["staged"]} == {"data/train.jsonl", "p.prompt.yaml"}
    assert "[main " in cli("commit", "-m", "first").output
    tmp_dir.gen({"data/train.jsonl": rows(20)[1:] + rows(1, start=50)})
    cli("add", "data/train.jsonl")
    d = json.loads(cli("diff", "--staged", "--json").output)
    assert [(x["path"], x["added"], x["removed"], x["modified"]) for x in d] == [("data/train.jsonl", 1, 1, 0)]
    assert "data/train.jsonl" in cli("diff", "--cached", "--stat").output
    cli("commit", "-m", "second")
    log = json.loads(cli("log", "--json").output)
    assert [e["message"].strip() for e in log] == ["second", "first"]
    assert "second" in cli("log", "--oneline", "--graph", "-n", "1").output
    cli("branch", "exp")
    assert {b["name"] for b in json.loads(cli("branch", "--json").output)} == {"main", "exp"}
    cli("fork", "HEAD~1", "old")
    cli("tag", "v1", "-m", "release")
    q = json.loads(cli("query", "SELECT count(*) AS n FROM table('data/train.jsonl', 'old')", "--json").output)
    assert q == [{"n": 20}]
    shown = json.loads(cli("show", "v1:data/train.jsonl", "--json").output)
    assert shown["manifest"]["rows"] == 20
    cli("export", "data/train.jsonl@old", "old.csv")
    assert len((tmp_dir / "old.csv").read_text().splitlines()) == 21
    assert json.loads(cli("fsck", "--json").output)["ok"] is True
    cli("checkout", "old")
    assert json.loads(cli("status", "--json").output)["branch"] == "old"


def test_errors_are_one_line(tmp_dir, cli) -> None:
    res = cli("status", code=1)
    assert res.output.startswith("error: not a DemoAI repository") and "Traceback" not in res.output
    cli("init")
    res = cli("show", "nope", code=1)
    assert res.output.count("\n") == 1 and "unknown revision 'nope'" in res.output
    tmp_dir.gen({"bad.jsonl": '{"a": 1}\n{oops\n'})
    res = cli("add", "bad.jsonl", code=1)
    assert "bad.jsonl" in res.output and "line 2" in res.output and res.output.count("\n") == 1
    assert cli("init", code=1).output.startswith("error: a DemoAI repository already exists")
