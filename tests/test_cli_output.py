"""What the CLI shows people and tools (issue 12, "everyday use"): export's refusals, no
Python reprs, JSON errors under --json, file lines in read errors, help on every command
and option, history order in `query ... FROM commits`."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
from click.testing import CliRunner

from demoai.cli import main
from tests.conftest import rows

ADAPTER_CONFIG = json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                             "target_modules": ["q_proj", "v_proj"]})


def _dataset_repo(tmp_dir, cli, n: int = 3) -> None:
    cli("init")
    tmp_dir.gen({"data/train.jsonl": rows(n)})
    cli("commit", "data/train.jsonl", "-m", "data")


def _json_line(text: str) -> dict[str, Any]:
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {text!r}"
    return json.loads(lines[0])


# ------------------------------------------------------------------ 11. export refusals

def test_export_refuses_unknown_extension_and_lists_formats(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    res = cli("export", "data/train.jsonl", "out.xlsx", code=1)
    assert not (tmp_dir / "out.xlsx").exists()
    assert "'.xlsx'" in res.output and "--format" in res.output
    for fmt in (".jsonl", ".csv", ".tsv", ".parquet"):
        assert fmt in res.output
    cli("export", "data/train.jsonl", "out.xlsx", "--format", "csv")
    assert (tmp_dir / "out.xlsx").read_text().splitlines()[0] == '"id","prompt","response","label"'


def test_export_dataset_in_the_format_the_extension_names(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    cli("export", "data/train.jsonl", "out.tsv")
    cli("export", "data/train.jsonl", "out.ndjson")
    header = (tmp_dir / "out.tsv").read_text().splitlines()[0]
    assert header.split("\t") == ['"id"', '"prompt"', '"response"', '"label"']
    assert [json.loads(x)["id"] for x in (tmp_dir / "out.ndjson").read_text().splitlines()] == [0, 1, 2]


def test_export_format_is_for_datasets_only(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"m.gguf": b"GGUF" + bytes(range(256)) * 10})
    cli("commit", "m.gguf", "-m", "model")
    res = cli("export", "m.gguf", "out.csv", "--format", "csv", code=1)
    assert "datasets" in res.output and not (tmp_dir / "out.csv").exists()
    cli("export", "m.gguf", "copy.bin")       # any name: a model is written as it was added
    assert (tmp_dir / "copy.bin").read_bytes() == (tmp_dir / "m.gguf").read_bytes()


def test_export_refuses_a_missing_folder_unless_parents(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    res = cli("export", "data/train.jsonl", "new/deeper/out.jsonl", code=1)
    assert "--parents" in res.output and not (tmp_dir / "new").exists()
    cli("export", "data/train.jsonl", "new/deeper/out.jsonl", "--parents")
    assert len((tmp_dir / "new/deeper/out.jsonl").read_text().splitlines()) == 3
    tmp_dir.gen({"afile": "x"})
    res = cli("export", "data/train.jsonl", "afile/sub/out.jsonl", "--parents", code=1)
    assert "cannot make folder" in res.output and "Traceback" not in res.output


def test_export_refuses_to_replace_a_file_unless_force(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    tmp_dir.gen({"mine.csv": "my own work\n"})
    res = cli("export", "data/train.jsonl", "mine.csv", code=1)
    assert "already exists" in res.output and "--force" in res.output
    assert (tmp_dir / "mine.csv").read_text() == "my own work\n"
    cli("export", "data/train.jsonl", "mine.csv", "--force")
    assert len((tmp_dir / "mine.csv").read_text().splitlines()) == 4


def test_export_force_never_replaces_the_repository(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"adapters/lora/adapter_config.json": ADAPTER_CONFIG,
                 "adapters/lora/adapter_model.safetensors": bytes(range(256)) * 40})
    cli("commit", "adapters/lora", "-m", "adapter")
    res = cli("export", "adapters/lora", ".", "--force", code=1)
    assert "repository" in res.output
    res = cli("export", "adapters/lora", ".demoai/lora", code=1)
    assert ".demoai" in res.output and not (tmp_dir / ".demoai/lora").exists()
    assert (tmp_dir / ".demoai").is_dir() and (tmp_dir / "adapters/lora/adapter_config.json").exists()
    cli("export", "adapters/lora", "elsewhere")              # a folder artifact: a new folder
    assert (tmp_dir / "elsewhere/adapter_config.json").read_text() == ADAPTER_CONFIG


def test_export_help_documents_the_refusals(cli) -> None:
    text = cli("export", "--help").output
    for word in ("--force", "--parents", "--format", "Example"):
        assert word in text


# ------------------------------------------------------------------ 12. no Python reprs

_REPR = re.compile(r"\{'|\['|\bNone\b|'\}|\(\{")


def test_gc_prints_fields_with_units_not_dicts(tmp_dir, cli) -> None:
    cli("init")
    big = random.Random(7).randbytes(400_000)              # incompressible: freed is KB
    tmp_dir.gen({"m.gguf": b"GGUF" + big})
    cli("add", "m.gguf")
    tmp_dir.gen({"m.gguf": b"GGUF" + bytes(reversed(big))})
    cli("add", "m.gguf")                                  # the first staged one is garbage now
    cli("commit", "-m", "model")
    res = cli("gc")
    assert not _REPR.search(res.output), res.output
    assert re.search(r"chunks removed:\s+[1-9]\d* \(\d+(\.\d+)? (KB|MB)\)", res.output), res.output
    assert re.search(r"freed in all:\s+\d+(\.\d+)? (KB|MB)", res.output), res.output
    data = json.loads(cli("gc", "--json").output)        # tools keep the numbers
    assert set(data) == {"chunks", "tables"} and data["chunks"]["removed_chunks"] == 0


def test_gc_reports_problems_and_exits_1(tmp_dir, cli, monkeypatch) -> None:
    cli("init")
    import demoai.porcelain as P
    monkeypatch.setattr(P, "gc", lambda repo: {
        "chunks": {"removed_chunks": 0, "freed_bytes": 0, "problems": ["chunk abc in pack-1.pack: hash mismatch"]},
        "tables": {"versions_removed": 0, "tables_removed": 0, "bytes_removed": 0, "skipped": [],
                   "problems": []}})
    res = cli("gc", code=1)
    assert "problem: chunk abc in pack-1.pack: hash mismatch" in res.output and not _REPR.search(res.output)


def test_fsck_report_has_a_human_summary(tmp_dir, cli, repo) -> None:
    import demoai.porcelain as P
    tmp_dir.gen({"d.jsonl": rows(3)})
    P.add(repo, ["d.jsonl"])
    P.commit(repo, "one")
    report = P.fsck(repo)
    assert report["ok"] is True and report.ok                    # still the dict callers index
    assert report.summary().startswith("ok: checked ") and "1 commit," in report.summary()
    assert "0 sessions" in report.summary() and not _REPR.search(report.summary())
    out = cli("fsck").output
    assert "1 commit," in out and "0 sessions" in out and not _REPR.search(out)


def test_query_cells_are_json_not_python_reprs(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    res = cli("query", "SELECT NULL AS nothing, [1, 2] AS list, {'a': 'x'} AS map, refs FROM commits")
    assert not _REPR.search(res.output), res.output
    for text in ("null", "[1, 2]", '{"a": "x"}', '["HEAD -> main"]'):
        assert text in res.output


def test_show_commit_prints_no_none_for_missing_lineage(tmp_dir, cli, monkeypatch) -> None:
    cli("init")
    import demoai.porcelain as P
    monkeypatch.setattr(P, "show", lambda repo, spec: {
        "id": "a" * 40, "author": "A <a@b>", "time": 0, "message": "imported\n", "parents": [],
        "lineage": {"environment": {"python": "3.11"}}, "changes": []})
    res = cli("show")
    assert "None" not in res.output and "Python 3.11" in res.output and "Lineage:" not in res.output


def test_show_model_files_in_units(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"m.gguf": b"GGUF" + bytes(range(256)) * 1200})
    cli("commit", "m.gguf", "-m", "model")
    res = cli("show", "HEAD:m.gguf")
    assert re.search(r"m\.gguf\s+307 KB\s+\d+ chunk", res.output), res.output


def test_pull_up_to_date_says_so(tmp_dir, cli, monkeypatch) -> None:
    cli("init")
    import demoai.porcelain as P
    monkeypatch.setattr(P, "pull", lambda repo, remote, progress=None: {
        "fetch": {"updated": [], "kept": [], "stats": {}},
        "merge": {"status": "up-to-date", "commit": None}})
    res = cli("pull")
    assert "Already up to date." in res.output and "merged" not in res.output.lower()


def test_branch_and_tag_changes_answer_json(tmp_dir, cli) -> None:
    _dataset_repo(tmp_dir, cli)
    made = json.loads(cli("branch", "exp", "--json").output)
    assert made["created"] == "exp" and len(made["commit"]) == 40
    assert json.loads(cli("branch", "-d", "exp", "--json").output)["deleted"] == "exp"
    assert json.loads(cli("tag", "v1", "--json").output)["created"] == "v1"


# ------------------------------------------------------------------ 13. JSON errors

def test_json_error_goes_to_stderr_as_json(tmp_dir, cli) -> None:
    cli("init")
    res = cli("show", "bogus", "--json", code=1)
    assert res.stdout == ""
    err = _json_line(res.stderr)["error"]
    assert err["code"] == "ref_not_found" and "bogus" in err["message"] and isinstance(err["fields"], dict)
    plain = cli("show", "bogus", code=1)                        # without --json: one line of text
    assert plain.stderr.startswith("error: unknown revision 'bogus'")


def test_usage_errors_are_json_with_json_and_keep_status_2(tmp_dir, cli) -> None:
    res = cli("show", "--bogus", "--json", code=2)
    err = _json_line(res.stderr)["error"]
    assert err["code"] == "usage_error" and "--bogus" in err["message"]
    assert err["fields"]["command"].endswith(" show") and "Usage:" in err["fields"]["usage"]
    res = cli("log", "-n", "many", "--json", code=2)            # a bad value, too
    assert _json_line(res.stderr)["error"]["fields"]["param"] == "limit"
    res = cli("remote", "list", "extra", "--json", code=2)      # in a sub-group
    assert _json_line(res.stderr)["error"]["code"] == "usage_error"
    assert cli("show", "--bogus", code=2).stderr.startswith("Usage:")   # text without --json


def _walk(cmd: click.Command, path: list[str]) -> Iterator[tuple[list[str], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, path + [name])


def _json_commands() -> list[list[str]]:
    return [p for p, c in _walk(main, []) if not isinstance(c, click.Group)
            and any(isinstance(o, click.Option) and "--json" in o.opts for o in c.params)]


ERROR_EXITS_2 = {("eval", "test"), ("eval", "gate")}
"""Commands whose exit status 1 means a test or gate *failed*, so any error exits 2."""


@pytest.mark.parametrize("path", _json_commands(), ids=" ".join)
def test_every_json_command_answers_json_even_when_it_fails(path, tmp_dir) -> None:
    """Outside a repository (or with dummy arguments), every command that takes --json
    answers JSON: on stdout when it works, one JSON error line on stderr when it fails
    (status 1 for a typed error, 2 for a usage error)."""
    cmd = main
    for name in path:
        cmd = cmd.commands[name]                                # type: ignore[attr-defined]
    args = list(path)
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            args.append("x")
        elif isinstance(p, click.Option) and p.required:
            args += [p.opts[0], "x"]
    res = CliRunner().invoke(main, args + ["--json"], env={"DEMOAI_HUB_DATA": str(tmp_dir / "hub")})
    assert not (res.exception and not isinstance(res.exception, SystemExit)), res.exception
    if res.exit_code == 0:
        json.loads(res.stdout)
    else:
        assert res.exit_code in (1, 2) and res.stdout == "", res.output
        err = _json_line(res.stderr)["error"]
        assert set(err) == {"code", "message", "fields"} and err["code"] and err["message"]
        if tuple(path) in ERROR_EXITS_2:   # their help documents 2 for any error (as pytest's)
            assert res.exit_code == 2, err
        else:
            assert (err["code"] == "usage_error") == (res.exit_code == 2), err   # click's status kept


# ------------------------------------------------------------------ 15. file lines

def _read_error(tmp_dir, name: str, content: str | bytes) -> str:
    """The message ``read_file`` raises for ``content``, after the file name it starts with."""
    from demoai import errors as E
    from demoai.store.tables.io import read_file
    tmp_dir.gen({name: content})
    with pytest.raises(E.InvalidArtifact) as info:
        read_file(tmp_dir / name)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_dir / name}: "), msg
    return msg[len(f"{tmp_dir / name}: "):]


def test_jsonl_syntax_error_names_the_file_line_once(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "bad.jsonl", '{"a": 1}\n{"a": 2}\n\n{"a": 3}\n{oops\n')
    assert "line 5, column 2: invalid JSON" in msg, msg
    assert msg.count("line") == 1 and "char" not in msg, msg


def test_jsonl_mixed_types_name_the_file_line_not_the_row(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "mixed.jsonl", '{"a": 1, "b": "x"}\n\n{"a": 2, "b": "y"}\n{"a": "three", "b": "z"}\n')
    assert msg == "line 4: column 'a' holds a string where line 1 holds a number", msg
    assert "row" not in msg, msg


def test_jsonl_non_object_names_its_line(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "arr.jsonl", '{"a": 1}\n\n[1, 2]\n')
    assert "line 3: expected a JSON object, got an array" in msg and msg.count("line") == 1, msg


def test_json_array_errors_name_the_file_line(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "mixed.json", '[\n  {"a": 1},\n  {"a": 2},\n  {"a": [3]}\n]\n')
    assert "line 4: column 'a' holds an array where line 2 holds a number" in msg and "row" not in msg, msg
    msg = _read_error(tmp_dir, "item.json", '[{"a": 1},\n 7]\n')
    assert "line 2: item 2 of the array is a number, not a JSON object" in msg, msg
    msg = _read_error(tmp_dir, "syntax.json", '[{"a": 1},\n {"a": }]\n')
    assert "line 2, column 8: invalid JSON" in msg and msg.count("line") == 1, msg


def test_csv_duplicate_header_names_the_file_and_line(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "dup.csv", "a,b,a\n1,2,3\n")
    assert msg == "line 1: column 'a' appears more than once in the header"


def test_csv_error_line_counts_quoted_newlines(tmp_dir) -> None:
    msg = _read_error(tmp_dir, "q.csv", 'a,b\n"two\nlines",1\n3\n')
    assert "line 4: expected 2 fields, got 1" in msg and msg.count("line") == 1, msg


def test_add_reports_the_file_line_through_the_cli(tmp_dir, cli) -> None:
    cli("init")
    tmp_dir.gen({"mixed.jsonl": '{"a": 1}\n{"a": "x"}\n'})
    res = cli("add", "mixed.jsonl", "--json", code=1)
    err = _json_line(res.stderr)["error"]
    assert err["fields"]["line"] == 2 and err["fields"]["column"] == "a" and "line 2:" in err["message"]


# ------------------------------------------------------------------ 16. help

_HELP_PARAM_OK = ("help", "version")


def _commands() -> list[tuple[str, click.Command]]:
    return [(" ".join(["demoai", *p]), c) for p, c in _walk(main, [])]


def test_every_command_option_and_argument_is_described() -> None:
    """Every command has a one-line summary, every option a help text, and every argument
    is named in its command's help (click arguments take no help of their own)."""
    missing: list[str] = []
    for name, cmd in _commands():
        text = (cmd.help or "").strip()
        summary = text.split("\n\n")[0] if text else ""
        if not summary:
            missing.append(f"{name}: no help")
        elif "\n" in summary or len(summary) > 80:
            missing.append(f"{name}: summary is not one line of at most 80 characters")
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip():
                missing.append(f"{name} {'/'.join(p.opts)}: no help")
            elif isinstance(p, click.Argument):
                words = re.findall(r"[A-Z][A-Z0-9_]*", p.human_readable_name)
                absent = [w for w in words if not re.search(rf"\b{w}\b", text)]
                if absent or not words:
                    missing.append(f"{name} argument {p.human_readable_name}: not described in the help")
    assert not missing, "commands lacking help:\n  " + "\n  ".join(missing)


MAIN_COMMANDS = ["init", "query", "export", "fsck", "repair", "gc", "demo", "log", "show",
                 "branch", "tag", "fork", "remote", "push", "fetch", "pull", "clone", "login",
                 "hub", "serve"]


@pytest.mark.parametrize("name", MAIN_COMMANDS)
def test_main_commands_show_an_example_block(cli, name) -> None:
    text = cli(name, "--help").output
    assert "Example:\n" in text, text
    lines = text.split("Example:\n", 1)[1].splitlines()
    assert lines and lines[0].startswith("    demoai ")      # kept as written (a \b paragraph)


def test_main_help_lists_every_command_with_a_summary(cli) -> None:
    text = cli("--help").output
    assert "Example:" in text
    listed = re.findall(r"^  (\w[\w-]*)\s{2,}(\S.*)$", text.split("Commands:", 1)[1], re.M)
    assert {n for n, _ in listed} == set(main.commands)        # type: ignore[attr-defined]


# ------------------------------------------------------------------ 18. query order

def test_query_commits_default_to_history_order(repo, tmp_dir) -> None:
    import demoai.porcelain as P
    for i in range(9):
        tmp_dir.gen({"p.prompt.yaml": f"template: 'v{i} {{{{q}}}}'\n"})
        P.add(repo, ["p.prompt.yaml"])
        P.commit(repo, f"c{i}")
    history = [e["id"][:12] for e in P.log(repo, all_refs=True)]
    for sql in ("SELECT short_id, message FROM commits",
                "SELECT DISTINCT short_id, message FROM commits",
                "SELECT short_id, count(*) AS n FROM commits GROUP BY short_id",
                "SELECT id FROM commits GROUP BY id"):
        got = [r.get("short_id") or r["id"][:12] for r in P.query(repo, sql).to_pylist()]
        assert got == history, sql
    got = [r["short_id"] for r in P.query(repo, "SELECT short_id FROM commits ORDER BY short_id").to_pylist()]
    assert got == sorted(history)                               # an ORDER BY wins


def test_query_order_documented(cli) -> None:
    assert "history order" in " ".join(cli("query", "--help").output.split())
