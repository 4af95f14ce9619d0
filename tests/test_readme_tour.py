"""README's tour, run top to bottom as written, in a fresh folder, by a real shell.

Every line of the ```bash blocks from "A tour of the CLI" up to "Sharing through a hub" runs
with ``bash -o pipefail`` and the installed ``demoai`` first on PATH. The one placeholder,
``SESSION``, becomes the name of the session the tour's ``agent run`` made. An agent run
may exit 3 (the model stopped at max_steps without finishing: documented in ``agent run
--help``); every other line must exit 0, and none may print a traceback.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


def tour_lines(readme: str | None = None) -> list[str]:
    """The shell lines of the tour, in order (blank and comment-only lines dropped)."""
    text = readme if readme is not None else (ROOT / "README.md").read_text()
    start = text.index("## A tour of the CLI")
    end = text.index("### Sharing through a hub", start)
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], re.S):
        for line in block.splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line)       # the tour's aligned comments
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line)
    return lines


def test_tour_extraction_finds_the_commands() -> None:
    lines = tour_lines()
    assert lines[0].startswith("demoai init")
    assert any(" agent run " in f" {x} " for x in lines)
    assert any("SESSION" in x for x in lines)


def _session(cwd: Path, env: dict[str, str]) -> str:
    r = subprocess.run(["demoai", "agent", "sessions", "--json"], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    items = data.get("sessions", data) if isinstance(data, dict) else data
    roots = [s["name"] for s in items if not s.get("forked_from") and not s.get("parent")]
    assert roots, data
    return roots[0]


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
           "DEMOAI_LLM_THREADS": "1", "COLUMNS": "120"}
    env.pop("DEMOAI_DEBUG", None)
    session = None
    for line in tour_lines():
        if "SESSION" in line:
            session = session or _session(tmp_path, env)
            line = line.replace("SESSION", session)
        r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        may_stop = re.search(r"\bagent (run|replay)\b", line) is not None
        allowed = {0, 3} if may_stop else {0}
        assert r.returncode in allowed and "Traceback" not in r.stdout + r.stderr, (
            f"README tour line `{line}` exited {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n"
            f"--- stderr\n{r.stderr[-3000:]}")
