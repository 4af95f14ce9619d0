"""The layers of ARCHITECTURE.md, enforced with import-linter (contracts in pyproject.toml).

The first test runs ``lint-imports`` in the repository root, as anyone would. The second
plants deliberately wrong imports in a copy of the tree and expects each contract to fail,
naming the import: a contract that cannot fail checks nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def _lint_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "static", "templates", "*.jsonl",
                                    "*.csv", "*.yaml")
    for pkg in ("demoai", "server", "hub"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=ignore)
    return dest


def _lint(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is not installed (the dev extra installs import-linter)")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=240)


def test_the_layers_hold() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 4 kept, 0 broken" in res.stdout, res.stdout


def test_a_wrong_import_breaks_the_contracts(tmp_path: Path) -> None:
    tree = _lint_tree(tmp_path)
    bad = {
        "demoai/store/_bad_upward.py": "import demoai.porcelain\n",          # layers
        "server/_bad_store.py": "import demoai.store.git.repo\n",      # faces via porcelain
        "demoai/porcelain/_bad_dulwich.py": "import dulwich.objects\n",       # dulwich in store only
        "demoai/runtime/_bad_click.py": "import click\n",                     # click in faces only
    }
    for rel, text in bad.items():
        (tree / rel).write_text(text)
    res = _lint(tree)
    out = res.stdout
    assert res.returncode != 0, out
    assert "Contracts: 0 kept, 4 broken" in out, out
    for needle in ("demoai.store._bad_upward -> demoai.porcelain",
                   "server._bad_store -> demoai.store",
                   "demoai.porcelain._bad_dulwich -> dulwich",
                   "demoai.runtime._bad_click -> click"):
        assert needle in out, (needle, out)
