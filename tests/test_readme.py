"""The README's commands and library example work as written (`.ci/run` also runs its quick start line)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def readme_command(section: str) -> str:
    """The command line the README gives under `## section`, read by the same script `.ci/run` uses."""
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "readme-command"), section], capture_output=True, text=True, check=True
    )
    return done.stdout.rstrip("\n")


@pytest.mark.parametrize(
    ("section", "ends_with"),
    [("Quick start", ".venv/bin/hfbatch run jobs/quickstart.toml"), ("Tests", ".venv/bin/python -m pytest -q")],
)
def test_set_up_lines_are_one_line_in_a_virtual_environment(section: str, ends_with: str) -> None:
    """Each set-up command is one line that makes a virtual environment and installs only into it (PEP 668)."""
    line = readme_command(section)
    assert "\n" not in line and line.startswith("python3 -m venv .venv && ")
    assert line.endswith(ends_with)
    # No step may install into, or run from, the system Python: pip and the tools come from .venv/bin.
    for step in line.split(" && ")[1:]:
        assert step.startswith(".venv/bin/"), step


def test_ci_runs_the_quick_start_line_the_readme_gives() -> None:
    """`.ci/run` reads the quick start line from the README and runs it with the system's python3, in a copy."""
    ci = (REPO / ".ci" / "run").read_text()
    assert '.ci/readme-command "Quick start"' in ci
    assert 'PATH=$system_path bash -euo pipefail -c "$quickstart"' in ci
    assert ci.index("system_path=$PATH") < ci.index('export PATH="$PWD/$venv/bin:$PATH"')


def test_the_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's run_job example runs the quick start from Python: a dry run, events, and every row done."""
    library = README.read_text(encoding="utf-8").split("\n## Library\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", library, re.S)
    assert match is not None
    shutil.copytree(REPO / "jobs", tmp_path / "jobs", ignore=shutil.ignore_patterns("out"))
    (tmp_path / "jobs" / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(match.group(1), "README.md", "exec"), {"__name__": "__readme__"})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("200 rows to send,")
    assert "provider alpha is out for this run" in printed.getvalue()
    assert lines[-2].startswith("run ended with exit code 0") and lines[-1].startswith("OK {")
    assert len((tmp_path / "jobs" / "out" / "quickstart.jsonl").read_text().splitlines()) == 200
