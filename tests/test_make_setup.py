"""`make setup` checks the interpreter before it builds anything."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub_interpreter(path: Path, version: str) -> Path:
    """A `python3` that answers any `-c` with a fixed major.minor, as 3.12 from Ubuntu 24.04 would."""
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def _make_setup(workdir: Path, python3: str) -> subprocess.CompletedProcess:
    # A copy of the two files the check reads, so that nothing of the real checkout can be touched.
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, workdir / name)
    return subprocess.run(
        ["make", "--no-print-directory", "setup", f"PYTHON3={python3}"],
        cwd=workdir, capture_output=True, text=True, timeout=60,
    )


def test_required_version_is_read_from_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    required = re.search(r'requires-python = ">=(\d+\.\d+),<', pyproject).group(1)
    assert required == f"{sys.version_info.major}.{sys.version_info.minor}", "the suite runs on the required version"


@pytest.mark.parametrize("version", ["3.12", "3.10"])
def test_another_version_stops_with_one_line_and_builds_nothing(tmp_path, version):
    stub = _stub_interpreter(tmp_path / f"python{version}", version)
    result = _make_setup(tmp_path, str(stub))
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"needs Python 3.11 but {stub} is {version}" in lines[0]
    assert "uv python install 3.11" in lines[0] and "PYTHON3=" in lines[0]
    assert not (tmp_path / ".venv").exists()


def test_a_missing_interpreter_is_named(tmp_path):
    missing = tmp_path / "no-such-python"
    result = _make_setup(tmp_path, str(missing))
    assert result.returncode != 0
    assert f"{missing} is not found" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_right_version_passes_the_check(tmp_path):
    # `make -n` prints the recipe without running it: the check expands to nothing and the venv
    # step is next, so the right interpreter is not refused.
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        ["make", "-n", "setup", f"PYTHON3={sys.executable}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    assert f"{sys.executable} -m venv .venv" in result.stdout
