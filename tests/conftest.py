"""Shared fixtures: every test runs in its own temp folder, away from the user's home."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from click.testing import CliRunner

from demoai.cli import main


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("DEMOAI_AUTHOR", "Test User <test@example.com>")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("DEMOAI_DEBUG", raising=False)


class TmpDir(type(Path())):  # type: ignore[misc]
    """A temp folder that can write a tree of files: ``tmp_dir.gen({"a.jsonl": rows})``."""

    def gen(self, spec: dict[str, Any]) -> list[Path]:
        made = []
        for name, content in spec.items():
            p = self / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, list):
                p.write_text("".join(json.dumps(r) + "\n" for r in content))
            elif isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
            made.append(p)
        return made


@pytest.fixture
def tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TmpDir:
    """The cwd, as a :class:`TmpDir`."""
    monkeypatch.chdir(tmp_path)
    return TmpDir(tmp_path)


@pytest.fixture
def repo(tmp_dir: TmpDir):
    """An empty repository in the cwd."""
    from demoai.porcelain import init
    r = init(tmp_dir)
    yield r
    r.close()


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Run ``demoai ARGS`` in-process; asserts the exit code (``code=``)."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        res = runner.invoke(main, list(args), catch_exceptions=False)
        assert res.exit_code == code, f"demoai {' '.join(args)} -> {res.exit_code}\n{res.output}"
        return res
    return run


def rows(n: int, start: int = 0, label: str = "a") -> list[dict[str, Any]]:
    return [{"id": i, "prompt": f"question {i}", "response": f"answer {i}", "label": label}
            for i in range(start, start + n)]


@pytest.fixture(scope="session")
def docker_url() -> Iterator[str]:
    """A Docker engine for the session: DEMOAI_TEST_DOCKER_HOST, or a private dockerd."""
    given = os.environ.get("DEMOAI_TEST_DOCKER_HOST")
    if given:
        yield given
        return
    from tests.helpers.skips import unavailable
    try:
        import docker  # noqa: F401
    except ImportError:
        unavailable("the docker package is not installed", "DEMOAI_REQUIRE_DOCKER")
    from tests.helpers.dockerd import Dockerd, DockerdError

    engine = Dockerd()
    try:
        url = engine.start()
    except DockerdError as e:
        unavailable(f"cannot start dockerd: {e}", "DEMOAI_REQUIRE_DOCKER")
    try:
        yield url
    finally:
        engine.stop()
