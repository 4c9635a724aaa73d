"""The model directory's files: qa.json and gate.json are read, written and checked in one place."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from qa.errors import ModelLoadError
from qa.model_dir import (
    GATE_RECORD,
    INFERENCE_PARAMS_FILE,
    check_model_dir,
    gate_passed,
    load_params,
    read_gate_records,
    save_params,
    write_gate_record,
)
from qa.params import InferenceParams, InvalidParams


@pytest.fixture()
def model_dir(tiny_bert_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, copy)
    return copy


def test_params_round_trip_and_default_when_absent(model_dir):
    (model_dir / INFERENCE_PARAMS_FILE).unlink(missing_ok=True)
    assert load_params(model_dir) == InferenceParams()
    params = InferenceParams(max_seq_length=128, doc_stride=32, max_query_length=32, n_best=5, max_answer_length=12)
    save_params(model_dir, params)
    assert load_params(model_dir) == params


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"qa\.json is not valid JSON"),
        ("[1, 2]", r"qa\.json must be a JSON object"),
        ('{"doc_strid": 128}', r"qa\.json field 'doc_strid': unknown field\(s\): doc_strid"),
        ('{"n_best": 0}', r"qa\.json field 'n_best': must be a positive integer, got 0"),
        ('{"n_best": true}', r"qa\.json field 'n_best': must be a positive integer, got True"),
        ('{"max_seq_length": 64, "doc_stride": 32, "max_query_length": 32}', r"field 'doc_stride'.*leaves no room"),
    ],
)
def test_a_bad_qa_json_names_the_file_and_field(model_dir, content, message):
    (model_dir / INFERENCE_PARAMS_FILE).write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load_params(model_dir)
    with pytest.raises(ModelLoadError, match=message):  # the start-up check reads it the same way
        check_model_dir(model_dir)


def test_params_validate_names_the_field():
    with pytest.raises(InvalidParams, match="max_answer_length: must be a positive integer, got -1") as caught:
        InferenceParams(max_answer_length=-1).validate()
    assert caught.value.field == "max_answer_length"


def test_gate_records_keep_other_backends_and_bind_to_graph_bytes(model_dir):
    graph = model_dir / "onnx" / "model.int8.onnx"
    graph.parent.mkdir()
    graph.write_bytes(b"graph one")
    digest = hashlib.sha256(b"graph one").hexdigest()
    write_gate_record(model_dir, "onnx-fp32", {"backend": "onnx-fp32", "passed": True})
    write_gate_record(model_dir, "onnx-int8", {"backend": "onnx-int8", "passed": True, "graph_sha256": digest})
    assert set(read_gate_records(model_dir)) == {"onnx-fp32", "onnx-int8"}
    assert gate_passed(model_dir, "onnx-int8", "onnx/model.int8.onnx")
    graph.write_bytes(b"graph two")  # a re-export with other bytes has not been gated
    assert not gate_passed(model_dir, "onnx-int8", "onnx/model.int8.onnx")
    (model_dir / GATE_RECORD).write_text("[not, a, record")
    assert read_gate_records(model_dir) == {}
