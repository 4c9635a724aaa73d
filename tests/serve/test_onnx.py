"""ONNX Runtime backends: answers, backend choice, threads, and no torch at serve time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qa import backends
from qa.backends import (
    ONNX_FILES,
    ONNX_FP32,
    ONNX_INT8,
    TORCH,
    OnnxBackend,
    cores_per_worker,
    default_threads,
    resolve_backend_name,
)
from qa.engine import QAEngine
from qa.errors import ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = [
    (
        "Where was the treaty signed?",
        "After long talks, the treaty was finally signed in Lisbon in 1907 by both kings.",
    ),
    (
        "Who wrote the report?",
        "The report, written by Maria Lopez, argued that the bridge needed urgent repairs.",
    ),
    (
        "What colour is the door?",
        "The house at the end of the lane has a bright green door and a small garden.",
    ),
    ("How many moons?", "Mars has two small moons, Phobos and Deimos, both discovered in 1877. " * 30),
]


def exported_copy(source: Path, target: Path) -> Path:
    from train.export import export_model

    shutil.copytree(source, target)
    export_model(target, log=lambda _msg: None)
    return target


@pytest.fixture(scope="module")
def onnx_bert_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    return exported_copy(tiny_bert_dir, tmp_path_factory.mktemp("onnx-bert") / "model")


@pytest.fixture(scope="module")
def onnx_distilbert_dir(tiny_distilbert_dir, tmp_path_factory) -> Path:
    return exported_copy(tiny_distilbert_dir, tmp_path_factory.mktemp("onnx-distilbert") / "model")


def answers(engine: QAEngine):
    questions, contexts = zip(*EXAMPLES, strict=True)
    return engine.answer_many(list(questions), list(contexts), top_k=3)


@pytest.mark.parametrize("model", ["onnx_bert_dir", "onnx_distilbert_dir"])
def test_fp32_graph_gives_the_torch_answers(model, request):
    model_dir = request.getfixturevalue(model)
    expected = answers(QAEngine.from_model_dir(model_dir, backend=TORCH))
    got = answers(QAEngine.from_model_dir(model_dir, backend=ONNX_FP32))
    assert [[(a.text, a.start, a.end) for a in per] for per in got] == [
        [(a.text, a.start, a.end) for a in per] for per in expected
    ]
    for per_got, per_expected in zip(got, expected, strict=True):
        for g, e in zip(per_got, per_expected, strict=True):
            assert g.score == pytest.approx(e.score, abs=1e-4)


@pytest.mark.parametrize("model", ["onnx_bert_dir", "onnx_distilbert_dir"])
def test_int8_graph_answers_with_valid_spans(model, request):
    engine = QAEngine.from_model_dir(request.getfixturevalue(model), backend=ONNX_INT8)
    assert engine.backend.name == ONNX_INT8
    for (_question, context), per in zip(EXAMPLES, answers(engine), strict=True):
        assert 1 <= len(per) <= 3
        assert [a.logit for a in per] == sorted((a.logit for a in per), reverse=True)
        for a in per:
            assert context[a.start : a.end] == a.text and 0 <= a.score <= 1


def test_distilbert_graph_takes_no_token_type_ids(onnx_distilbert_dir):
    backend = OnnxBackend(onnx_distilbert_dir, ONNX_INT8, threads=1)
    assert backend.input_names == ("input_ids", "attention_mask")


def test_missing_graph_is_a_load_error_that_says_how_to_make_it(tiny_bert_dir):
    with pytest.raises(ModelLoadError, match="make export"):
        QAEngine.from_model_dir(tiny_bert_dir, backend=ONNX_INT8)


def test_corrupt_graph_is_a_load_error(onnx_bert_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(onnx_bert_dir, broken)
    (broken / ONNX_FILES[ONNX_INT8]).write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match="not a loadable ONNX graph"):
        OnnxBackend(broken, ONNX_INT8)


def test_unknown_backend_lists_the_choices(tiny_bert_dir):
    with pytest.raises(ModelLoadError, match="onnx-int8, onnx-fp32, torch"):
        QAEngine.from_model_dir(tiny_bert_dir, backend="tensorrt")


# --- "auto": int8 only once gated, then fp32 graph, then torch -------------------------------


def model_dir_with(tmp_path: Path, files: list[str], gate: dict | None = None) -> Path:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    if gate is not None:
        (tmp_path / "gate.json").write_text(json.dumps(gate))
    return tmp_path


BOTH = [ONNX_FILES[ONNX_INT8], ONNX_FILES[ONNX_FP32]]
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # the placeholder graphs' bytes
INT8_PASSED = {"passed": True, "backend": ONNX_INT8, "graph_sha256": EMPTY_SHA256}


@pytest.mark.parametrize(
    "files, gate, expected",
    [
        ([], None, TORCH),
        ([ONNX_FILES[ONNX_FP32]], None, ONNX_FP32),
        (BOTH, None, ONNX_FP32),  # int8 present but never gated
        (BOTH, {ONNX_INT8: INT8_PASSED}, ONNX_INT8),  # the record `make gate` writes, keyed by backend
        (BOTH, INT8_PASSED, ONNX_INT8),  # a single record
        (BOTH, {ONNX_INT8: {**INT8_PASSED, "passed": False}}, ONNX_FP32),
        (BOTH, {TORCH: {"passed": True, "backend": TORCH}}, ONNX_FP32),  # fp32 passing says nothing of int8
        ([ONNX_FILES[ONNX_INT8]], None, TORCH),
        ([ONNX_FILES[ONNX_FP32]], {ONNX_INT8: INT8_PASSED}, ONNX_FP32),  # gated, but the graph is gone
        (BOTH, {ONNX_INT8: {**INT8_PASSED, "graph_sha256": "0" * 64}}, ONNX_FP32),  # gated other bytes
        (BOTH, {ONNX_INT8: {"passed": True, "backend": ONNX_INT8}}, ONNX_FP32),  # no graph hash: not gated
    ],
)
def test_auto_picks_int8_only_when_it_exists_and_passed_its_gate(tmp_path, files, gate, expected):
    assert resolve_backend_name("auto", model_dir_with(tmp_path, files, gate)) == expected


def test_unreadable_gate_record_counts_as_not_gated(tmp_path):
    model_dir = model_dir_with(tmp_path, BOTH)
    (model_dir / "gate.json").write_text("{not json")
    assert resolve_backend_name("auto", model_dir) == ONNX_FP32


def test_explicit_backend_name_is_kept(tmp_path):
    assert resolve_backend_name(TORCH, model_dir_with(tmp_path, BOTH, INT8_PASSED)) == TORCH


# --- threads -------------------------------------------------------------------------------


def test_threads_default_to_the_cores_each_worker_owns(monkeypatch):
    monkeypatch.delenv("QA_THREADS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(backends, "usable_cores", lambda: 8)
    monkeypatch.setenv("QA_WORKERS", "2")
    assert cores_per_worker() == 4 == default_threads()
    monkeypatch.setenv("QA_WORKERS", "16")
    assert default_threads() == 1
    monkeypatch.setenv("QA_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("QA_THREADS", "zero")
    with pytest.raises(ValueError, match="QA_THREADS"):
        default_threads()


def test_session_uses_the_requested_threads(onnx_bert_dir):
    backend = OnnxBackend(onnx_bert_dir, ONNX_FP32, threads=1)
    assert backend.threads == 1
    assert backend.session.get_session_options().intra_op_num_threads == 1


def test_the_batcher_loads_a_single_thread_session_per_lane_that_answers_like_the_engine(onnx_bert_dir, monkeypatch):
    from serve.batching import MicroBatcher

    engine = QAEngine.from_model_dir(onnx_bert_dir, backend=ONNX_INT8, threads=2)
    monkeypatch.delenv("QA_MODEL_LANES", raising=False)
    batcher = MicroBatcher.from_env(engine)
    assert len(batcher.lanes) == 2
    assert all(lane.name == ONNX_INT8 for lane in batcher.lanes)
    assert [lane.session.get_session_options().intra_op_num_threads for lane in batcher.lanes] == [1, 1]
    questions, contexts = zip(*EXAMPLES, strict=True)
    windows = engine.windower.windows(list(questions), list(contexts))
    whole, lane = engine.window_logits(windows), engine.window_logits(windows, backend=batcher.lanes[0])
    for a, b in zip(whole[0] + whole[1], lane[0] + lane[1], strict=True):
        assert (a == b).all()  # the same graph gives the same logits on one thread as on two
    batcher.close()
    monkeypatch.setenv("QA_MODEL_LANES", "0")
    assert MicroBatcher.from_env(engine).lanes == ()


# --- the runtime image has no torch -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", [ONNX_INT8, ONNX_FP32])
def test_onnx_serving_path_never_imports_torch_or_transformers(onnx_bert_dir, backend_name):
    script = textwrap.dedent(
        f"""
        import json, sys
        from serve.batching import MicroBatcher
        from qa.engine import QAEngine
        engine = QAEngine.from_model_dir({str(onnx_bert_dir)!r}, backend={backend_name!r})
        batcher = MicroBatcher(engine)
        found = batcher.answer("Where was it signed?", "The treaty was signed in Lisbon.")
        batcher.close()
        print(json.dumps({{
            "backend": engine.backend.name,
            "answered": len(found),
            "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules),
        }}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"backend": backend_name, "answered": 1, "heavy": []}
