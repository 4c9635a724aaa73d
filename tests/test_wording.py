"""tools/check_wording.py: the docs and code comments speak of the product, not of how the work went."""

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "check_wording.py"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_wording", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_repository_passes():
    assert load_checker().check(REPO) == []


def test_work_session_and_issue_references_are_flagged(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n"
        "\n"
        "12.0 ms, as measured in session 7.\n"
        "The padding bug: see issue #12.\n"
        "It took 4.6 h over three sessions, and the fast-int8 issue is gone (#34).\n"
    )
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "step.py").write_text(
        'NOTE = "session 9 in a string is no comment"\n'
        "x = 1  # fixed in this session\n"
    )
    (tmp_path / "Makefile").write_text("lint:  # see issue 5\n\ttrue\n")

    found = load_checker().check(tmp_path)

    assert found == [
        "docs/page.md:3: session 7",
        "docs/page.md:4: issue #12",
        "docs/page.md:5: over three sessions",
        "docs/page.md:5: the fast-int8 issue",
        "docs/page.md:5: #34",
        "Makefile:1: issue 5",
        "train/step.py:2: this session",
    ]


def test_entities_colours_and_runtime_sessions_pass(tmp_path):
    (tmp_path / "README.md").write_text(
        "The form escapes quotes as &#34; and &#39;; the plot uses #fff, #1f77b4 and color: #000.\n"
        "Each lane is an ONNX Runtime session: one InferenceSession per core, built from sess_options.\n"
        "A client keeps a session cookie; [Overview](#1-overview) is an anchor.\n"
        "The ledger is sessions.json; a resumed run keeps its first session's parameters.\n"
    )
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "app.py").write_text(
        "import onnxruntime  # one ONNX Runtime session per lane\n"
        'COLOUR = "#123"  # the bar colour, #4c72b0 in the plot, #000000 in print\n'
    )

    assert load_checker().check(tmp_path) == []


def test_command_line_exit_status(tmp_path):
    (tmp_path / "README.md").write_text("Measured in session 3.\n")
    flagged = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert flagged.returncode == 1
    assert flagged.stdout == "README.md:1: session 3\n"

    (tmp_path / "README.md").write_text("Measured on an AMD EPYC, AVX2 only, 2 cores, Dec 2026.\n")
    clean = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")
