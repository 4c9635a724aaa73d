"""docker/prune_model.py: what goes into the image's model directory."""

import hashlib
import importlib.util
import json
import stat
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prune_model = load_script("prune_model")


@pytest.fixture
def trained_dir(tmp_path: Path) -> Path:
    """A model directory as training + export leave it (file contents do not matter here)."""
    src = tmp_path / "model"
    (src / "onnx").mkdir(parents=True)
    (src / "checkpoint-10").mkdir()
    for name in ("config.json", "tokenizer.json", "qa.json", "metrics.json", "README.md"):
        (src / name).write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "model.safetensors").chmod(0o600)  # as save_pretrained writes it
    (src / "training_args.bin").write_bytes(b"args")
    (src / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (src / "onnx" / "model.onnx").write_bytes(b"fp32")
    (src / "onnx" / "model.int8.onnx").write_bytes(b"int8")
    (src / "onnx" / "export.json").write_text("{}")
    return src


def gate_record(passed: bool, graph: bytes = b"int8") -> str:
    """A gate record for the placeholder int8 graph (a record names the bytes it judged)."""
    return json.dumps({"onnx-int8": {"backend": "onnx-int8", "passed": passed,
                                     "graph_sha256": hashlib.sha256(graph).hexdigest()}})


def shipped(dest: Path) -> set[str]:
    return {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}


def test_ungated_model_ships_the_fp32_graph_and_no_torch_weights(trained_dir, tmp_path):
    dest = tmp_path / "runtime"
    prune_model.prune(trained_dir, dest)
    assert shipped(dest) == {
        "config.json", "tokenizer.json", "qa.json", "metrics.json", "README.md",
        "onnx/model.onnx", "onnx/export.json",
    }


def test_gated_int8_model_ships_only_the_int8_graph(trained_dir, tmp_path):
    (trained_dir / "gate.json").write_text(gate_record(passed=True))
    dest = tmp_path / "runtime"
    prune_model.prune(trained_dir, dest)
    files = shipped(dest)
    assert "onnx/model.int8.onnx" in files and "gate.json" in files
    assert "onnx/model.onnx" not in files


def test_failed_int8_gate_falls_back_to_fp32(trained_dir, tmp_path):
    (trained_dir / "gate.json").write_text(gate_record(passed=False))
    dest = tmp_path / "runtime"
    prune_model.prune(trained_dir, dest)
    assert "onnx/model.onnx" in shipped(dest) and "onnx/model.int8.onnx" not in shipped(dest)


def test_every_file_is_readable_by_the_non_root_user(trained_dir, tmp_path):
    dest = tmp_path / "runtime"
    prune_model.prune(trained_dir, dest, onnx="both", keep_torch_weights=True)
    assert "model.safetensors" in shipped(dest)
    for path in dest.rglob("*"):
        assert path.stat().st_mode & stat.S_IROTH, path
        if path.is_dir():
            assert path.stat().st_mode & stat.S_IXOTH, path


def test_a_model_without_an_onnx_export_is_refused(trained_dir, tmp_path):
    for graph in (trained_dir / "onnx").glob("*.onnx"):
        graph.unlink()
    with pytest.raises(SystemExit, match="no ONNX graph"):
        prune_model.prune(trained_dir, tmp_path / "runtime")
    with pytest.raises(SystemExit, match="lacks onnx/model.int8.onnx"):
        prune_model.prune(trained_dir, tmp_path / "runtime", onnx="int8")


def test_a_gated_static_int8_graph_stays_out_of_the_onnx_runtime_image(trained_dir, tmp_path, monkeypatch):
    """The image has no openvino: even where auto would serve openvino-int8, it ships the ONNX Runtime graph."""
    from qa import backends
    from qa.model_dir import graph_sha256

    (trained_dir / "openvino").mkdir()
    (trained_dir / "openvino" / "model.int8.xml").write_text("<net/>")
    (trained_dir / "openvino" / "model.int8.bin").write_bytes(b"weights")
    records = json.loads(gate_record(passed=True))
    records["openvino-int8"] = {"backend": "openvino-int8", "passed": True,
                                "graph_sha256": graph_sha256(trained_dir / "openvino" / "model.int8.xml")}
    (trained_dir / "gate.json").write_text(json.dumps(records))
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert backends.resolve_backend_name("auto", trained_dir) == "openvino-int8"
    dest = tmp_path / "runtime"
    prune_model.prune(trained_dir, dest)
    files = shipped(dest)
    assert "onnx/model.int8.onnx" in files
    assert not any(name.startswith("openvino") for name in files)
