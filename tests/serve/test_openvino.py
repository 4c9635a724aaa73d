"""The static-int8 OpenVINO backend: export, answers, batch independence, gate and backend choice."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import RecordingBackend

from qa import backends
from qa.backends import ONNX_INT8, OPENVINO_INT8, OnnxBackend, OpenVinoBackend, openvino_preferred
from qa.engine import QAEngine
from qa.errors import ModelLoadError
from qa.model_dir import GATE_RECORD, OPENVINO_EXPORT_INFO_FILE, OPENVINO_INT8_FILE, graph_sha256
from qa.windowing import Windower

pytest.importorskip("openvino")
pytest.importorskip("nncf")

QUESTIONS = [
    ("Where was the treaty signed?", "After long talks, the treaty was signed in Lisbon in 1907 by both kings."),
    ("Who wrote the report?", "The report, written by Maria Lopez, argued that the bridge needed urgent repairs."),
    ("How many moons?", "Mars has two small moons, Phobos and Deimos, both discovered in 1877. " * 12),
]


@pytest.fixture(scope="module")
def openvino_dir(tiny_bert_dir, fixtures_dir, tmp_path_factory) -> Path:
    from train.export import export_model
    from train.export_openvino import export_openvino_int8

    target = tmp_path_factory.mktemp("openvino-bert") / "model"
    shutil.copytree(tiny_bert_dir, target)
    export_model(target, log=lambda _msg: None)  # the ONNX Runtime graphs too, to compare with
    export_openvino_int8(target, fixtures_dir / "tiny_squad.json", samples=16, log=lambda _msg: None)
    return target


def gate(model_dir: Path, backend: str, graph: str, passed: bool = True) -> None:
    records = json.loads((model_dir / GATE_RECORD).read_text()) if (model_dir / GATE_RECORD).exists() else {}
    records[backend] = {"backend": backend, "passed": passed, "graph_sha256": graph_sha256(model_dir / graph)}
    (model_dir / GATE_RECORD).write_text(json.dumps(records))


def test_the_export_records_its_calibration_on_train_windows(openvino_dir, fixtures_dir):
    info = json.loads((openvino_dir / OPENVINO_EXPORT_INFO_FILE).read_text())
    assert info["calibration_file"] == str(fixtures_dir / "tiny_squad.json")
    assert info["calibration_windows"] == 16
    assert info["calibration_articles"] == "all articles of the file"  # the tiny model held nothing out
    assert np.isfinite(info["int8_max_abs_diff"])
    assert (openvino_dir / OPENVINO_INT8_FILE).with_suffix(".bin").is_file()


def test_calibration_reads_only_the_held_out_articles_when_the_model_names_them(tiny_bert_dir, fixtures_dir, tmp_path):
    from train.data import load_squad
    from train.export_openvino import calibration_windows

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    title = examples[0].title
    (model_dir / "heldout_articles.json").write_text(json.dumps({"titles": [title]}))
    batches, articles = calibration_windows(model_dir, fixtures_dir / "tiny_squad.json", samples=1000, seed=0)
    assert articles == "held-out train articles"
    windower = Windower.from_file(model_dir / "tokenizer.json")
    held = [e for e in examples if e.title == title]
    assert len(batches) == len(windower.windows([e.question for e in held], [e.context for e in held]))


def test_the_static_graph_answers_like_the_dynamic_int8_graph(openvino_dir):
    questions, contexts = zip(*QUESTIONS, strict=True)
    ov = QAEngine.from_model_dir(openvino_dir, backend=OPENVINO_INT8).answer_many(list(questions), list(contexts))
    ort = QAEngine.from_model_dir(openvino_dir, backend=ONNX_INT8).answer_many(list(questions), list(contexts))
    assert all(per and per[0].text for per in ov)
    # A random tiny model has no clear answer, so only the best span's place is compared loosely.
    assert sum(a[0].text == b[0].text for a, b in zip(ov, ort, strict=True)) >= 1


def _logits_alone_and_batched(backend, windower):
    """Each window's logits when it runs alone and when it shares a padded batch with the others."""
    questions, contexts = zip(*QUESTIONS, strict=True)
    windows = windower.windows(list(questions), list(contexts))
    batched_start, _ = backend(windower.pad(windows).as_inputs(backend.input_names))
    diffs = []
    for row, window in enumerate(windows):
        alone_start, _ = backend(windower.pad([window]).as_inputs(backend.input_names))
        n = len(window)
        diffs.append(float(np.abs(alone_start[0, :n] - batched_start[row, :n]).max()))
    return max(diffs)


def test_the_unquantised_ops_run_in_f32_on_every_cpu(openvino_dir):
    # OpenVINO would pick bf16 on a CPU with avx512_bf16 or AMX: other numbers than the gate measured.
    import openvino

    compiled = OpenVinoBackend(openvino_dir, threads=1)._request.get_compiled_model()
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


def test_workers_do_not_pin_their_threads_to_the_same_cores(openvino_dir):
    # Each process would pin from core 0 on, so two single-thread workers would share one core.
    compiled = OpenVinoBackend(openvino_dir, threads=1)._request.get_compiled_model()
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_static_scales_make_a_windows_logits_independent_of_its_batch_neighbours(openvino_dir):
    windower = Windower.from_file(openvino_dir / "tokenizer.json")
    static = _logits_alone_and_batched(OpenVinoBackend(openvino_dir, threads=1), windower)
    dynamic = _logits_alone_and_batched(OnnxBackend(openvino_dir, ONNX_INT8, threads=1), windower)
    # Dynamic int8 measures each batch's activation range, so its neighbours move its logits;
    # fixed scales leave only float rounding (the padded rows change the GEMM shapes).
    assert dynamic > 1e-3
    assert static < 1e-4


def test_auto_picks_the_static_graph_only_when_gated_and_the_cpu_has_int8_dot_products(openvino_dir, tmp_path,
                                                                                       monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(openvino_dir, model_dir)
    vnni, avx2 = frozenset({"avx2", "avx512_vnni"}), frozenset({"avx2"})
    assert not openvino_preferred(model_dir, vnni)  # not gated
    gate(model_dir, OPENVINO_INT8, OPENVINO_INT8_FILE)
    assert openvino_preferred(model_dir, vnni)
    assert not openvino_preferred(model_dir, avx2)  # dynamic int8 is faster without VNNI
    monkeypatch.setattr(backends, "cpu_flags", lambda: vnni)
    assert backends.resolve_backend_name("auto", model_dir) == OPENVINO_INT8
    gate(model_dir, OPENVINO_INT8, OPENVINO_INT8_FILE, passed=False)
    assert backends.resolve_backend_name("auto", model_dir) != OPENVINO_INT8
    gate(model_dir, OPENVINO_INT8, OPENVINO_INT8_FILE)
    weights = (model_dir / OPENVINO_INT8_FILE).with_suffix(".bin")
    weights.write_bytes(weights.read_bytes() + b"\0")  # the verdict names the weights too, not just the topology
    assert backends.resolve_backend_name("auto", model_dir) != OPENVINO_INT8


def test_without_openvino_the_backend_says_what_is_missing_and_auto_falls_back(openvino_dir, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(openvino_dir, model_dir)
    gate(model_dir, OPENVINO_INT8, OPENVINO_INT8_FILE)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as in the runtime image
    with pytest.raises(ModelLoadError, match="needs openvino"):
        OpenVinoBackend(model_dir)
    assert not openvino_preferred(model_dir, frozenset({"avx512_vnni"}))


def test_a_missing_or_corrupt_graph_is_a_load_error_that_names_the_file(tiny_bert_dir, openvino_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="make export-openvino"):
        OpenVinoBackend(tiny_bert_dir)
    broken = tmp_path / "model"
    shutil.copytree(openvino_dir, broken)
    (broken / OPENVINO_INT8_FILE).write_text("<net>not a graph")
    with pytest.raises(ModelLoadError, match="not a loadable OpenVINO graph"):
        OpenVinoBackend(broken)


def test_the_gate_records_the_static_graphs_bytes(openvino_dir, fixtures_dir, tmp_path):
    from train.gate import gate_model, record_gate

    model_dir = tmp_path / "model"
    shutil.copytree(openvino_dir, model_dir)
    result = gate_model(model_dir, data=str(fixtures_dir / "tiny_squad.json"), backend=OPENVINO_INT8,
                        config_file="configs/smoke.yaml")
    record_gate(model_dir, result)
    record = json.loads((model_dir / GATE_RECORD).read_text())[OPENVINO_INT8]
    assert record["graph_sha256"] == graph_sha256(model_dir / OPENVINO_INT8_FILE)
    assert record["backend"] == OPENVINO_INT8


def _engine_and_one_window(openvino_dir):
    """An openvino-int8 engine (its backend spied on) and one window whose length is not a multiple
    of the backend's length step."""
    from qa.backends import OPENVINO_LENGTH_STEP

    engine = QAEngine.from_model_dir(openvino_dir, backend=OPENVINO_INT8, threads=1)
    assert engine.length_step == OPENVINO_LENGTH_STEP
    engine.backend = RecordingBackend(engine.backend)
    window = engine.windower.windows([QUESTIONS[0][0]], [QUESTIONS[0][1]])[0]
    assert len(window) % OPENVINO_LENGTH_STEP  # the case that gets padded
    return engine, window


def test_windows_padded_to_the_length_step_keep_their_own_logits(openvino_dir):
    engine, window = _engine_and_one_window(openvino_dir)
    length = len(window)
    (start,), (end,) = engine.window_logits([window])
    padded = engine.backend.shapes[0][1]
    assert padded % engine.length_step == 0 and length < padded < length + engine.length_step
    alone = engine.backend.inner(engine.windower.pad([window]).as_inputs(engine.backend.input_names))
    assert np.abs(start[:length] - alone[0][0]).max() < 1e-4
    assert np.abs(end[:length] - alone[1][0]).max() < 1e-4


def test_padding_stops_at_the_models_position_limit(openvino_dir):
    engine, window = _engine_and_one_window(openvino_dir)
    engine.max_positions = len(window)  # a model whose last position this window already reaches
    engine.window_logits([window])
    assert engine.backend.shapes == [(1, len(window))]
