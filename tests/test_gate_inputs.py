"""CI re-runs the full-dev gates exactly when something they depend on changed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gate_inputs import gate_input_files, main  # noqa: E402

MODEL = "models/m"


@pytest.fixture
def repo(tmp_path) -> Path:
    files = {
        "qa/engine.py": "WINDOW = 384\n",
        "train/__init__.py": "",
        "train/gate.py": "from train.data import load\nfrom qa.engine import WINDOW\n",
        "train/evaluate.py": "def run():\n    from train.metrics.score import f1\n",
        "train/data.py": "def load(): ...\n",
        "train/metrics/score.py": "def f1(): ...\n",
        "train/train.py": "EPOCHS = 1\n",
        "serve/app.py": "ROUTES = []\n",
        "docs/README.md": "# docs\n",
        f"{MODEL}/config.json": "{}\n",
        f"{MODEL}/onnx/model.int8.onnx": "built from the weights\n",
        "constraints.txt": "numpy==2\n",
        "pyproject.toml": "[project]\n",
        ".ci/run": "make gate\n",
        ".gitignore": "models/*/onnx/\n",
        "dev.json": '{"data": []}\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def run(repo: Path, *args: str) -> int:
    return main([*args, "--data", str(repo / "dev.json"), "--model", MODEL, "--root", str(repo),
                 "--record", str(repo / ".ci/gates.json")])


def test_the_inputs_are_the_model_the_engine_the_gate_code_and_the_pins(repo):
    names = {path.as_posix() for path in gate_input_files(repo, MODEL)}
    assert names == {
        "qa/engine.py", "train/__init__.py", "train/gate.py", "train/evaluate.py", "train/data.py",
        "train/metrics/score.py", f"{MODEL}/config.json", "constraints.txt", "pyproject.toml", ".ci/run",
    }  # not train/train.py, serve/, docs/ or the ignored ONNX graph


def test_check_passes_after_record_and_fails_after_a_relevant_change(repo, capsys):
    assert run(repo, "check") == 1  # no record yet
    assert run(repo, "record") == 0
    assert run(repo, "check") == 0
    (repo / "docs/README.md").write_text("# other docs\n")
    (repo / "serve/app.py").write_text("ROUTES = ['/v1/answer']\n")
    (repo / "train/train.py").write_text("EPOCHS = 2\n")
    assert run(repo, "check") == 0, "a change the gates do not depend on skips them"
    for name in ("qa/engine.py", "train/metrics/score.py", f"{MODEL}/config.json", "dev.json", "constraints.txt"):
        original = (repo / name).read_text()
        (repo / name).write_text(original + " ")
        assert run(repo, "check") == 1, name
        (repo / name).write_text(original)
    assert run(repo, "check") == 0
    assert "unchanged since the gates passed" in capsys.readouterr().out


def test_record_keeps_the_hash_taken_before_the_gates_wrote_their_verdict(repo):
    before = gate_hash(repo)
    (repo / MODEL / "gate.json").write_text('{"passed": true}\n')  # what a gate run leaves behind
    assert run(repo, "record", "--inputs-sha256", before) == 0
    assert run(repo, "check") == 1
    (repo / MODEL / "gate.json").unlink()
    assert run(repo, "check") == 0


def test_an_unreadable_record_runs_the_gates(repo, capsys):
    (repo / ".ci/gates.json").write_text("not json")
    assert run(repo, "check") == 1
    assert "unreadable record" in capsys.readouterr().out


def gate_hash(repo: Path) -> str:
    from gate_inputs import inputs_sha256

    return inputs_sha256(repo, MODEL, repo / "dev.json")
