"""train.export: torch -> optimised fp32 ONNX + int8 ONNX with dynamic axes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qa.model_dir import ONNX_DIR, ONNX_EXPORT_INFO_FILE
from train.cli import EXIT_ERROR
from train.export import FP32_FILE, INT8_FILE, export_model, main


@pytest.fixture(scope="module")
def exported(tiny_bert_dir, tiny_distilbert_dir, tmp_path_factory):
    """Copies of the tiny models (the shared fixtures stay un-exported), each exported once."""
    out = {}
    for arch, source in (("bert", tiny_bert_dir), ("distilbert", tiny_distilbert_dir)):
        target = tmp_path_factory.mktemp(f"export-{arch}") / "model"
        shutil.copytree(source, target)
        info = export_model(target, log=lambda _msg: None)
        out[arch] = (target, info)
    return out


def torch_logits(model_dir, inputs):
    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir), local_files_only=True).eval()
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return out.start_logits.numpy(), out.end_logits.numpy()


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    "arch, expected_inputs",
    [
        ("bert", ["input_ids", "attention_mask", "token_type_ids"]),
        ("distilbert", ["input_ids", "attention_mask"]),
    ],
)
def test_writes_both_graphs_and_describes_their_inputs(exported, arch, expected_inputs):
    model_dir, info = exported[arch]
    onnx_dir = model_dir / ONNX_DIR
    assert (onnx_dir / FP32_FILE).is_file() and (onnx_dir / INT8_FILE).is_file()
    record = json.loads((model_dir / ONNX_EXPORT_INFO_FILE).read_text())
    assert record["input_names"] == expected_inputs == info.input_names
    assert record["output_names"] == ["start_logits", "end_logits"]
    for name in (FP32_FILE, INT8_FILE):
        assert [i.name for i in session(onnx_dir / name).get_inputs()] == expected_inputs
    # Nothing else (scratch files of the export) is left behind.
    export_info = ONNX_EXPORT_INFO_FILE.rsplit("/", 1)[1]
    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted([export_info, FP32_FILE, INT8_FILE])


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_fp32_graph_matches_torch_at_other_batch_and_sequence_sizes(exported, arch):
    model_dir, info = exported[arch]
    rng = np.random.default_rng(7)
    for batch, length in ((1, 9), (5, 70)):
        inputs = {
            "input_ids": rng.integers(1000, 5000, size=(batch, length), dtype=np.int64),
            "attention_mask": np.ones((batch, length), dtype=np.int64),
            "token_type_ids": np.zeros((batch, length), dtype=np.int64),
        }
        inputs["attention_mask"][0, length // 2 :] = 0
        inputs = {k: v for k, v in inputs.items() if k in info.input_names}
        expected = torch_logits(model_dir, inputs)
        got = session(model_dir / ONNX_DIR / FP32_FILE).run(["start_logits", "end_logits"], inputs)
        for e, g in zip(expected, got, strict=True):
            assert g.shape == (batch, length)
            keep = inputs["attention_mask"].astype(bool)
            np.testing.assert_allclose(g[keep], e[keep], atol=1e-4)


def test_graphs_declare_dynamic_batch_and_sequence_axes(exported):
    model_dir, _ = exported["bert"]
    for name in (FP32_FILE, INT8_FILE):
        graph = onnx.load(str(model_dir / ONNX_DIR / name)).graph
        for value in (*graph.input, *graph.output):
            dims = value.type.tensor_type.shape.dim
            assert [d.dim_param for d in dims] == ["batch", "sequence"], (name, value.name)


def test_fp32_graph_is_fused_and_int8_graph_is_per_channel_quantised(exported):
    model_dir, info = exported["bert"]
    assert info.fused_operators.get("Attention") == 2  # one per layer of the tiny model
    fp32_ops = {n.op_type for n in onnx.load(str(model_dir / ONNX_DIR / FP32_FILE)).graph.node}
    assert {"Attention", "EmbedLayerNormalization", "LayerNormalization"} <= fp32_ops
    # Left unfused on purpose: ORT's SkipLayerNormalization CPU kernel is the slow one.
    assert "SkipLayerNormalization" not in fp32_ops
    int8 = onnx.load(str(model_dir / ONNX_DIR / INT8_FILE)).graph
    int8_ops = {n.op_type for n in int8.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear", "QAttention"} <= int8_ops
    # Embedding tables stay fp32 by default (a lookup gains nothing from int8, and loses accuracy).
    assert "EmbedLayerNormalization" in int8_ops and "QEmbedLayerNormalization" not in int8_ops
    assert info.quantized_op_types == ["MatMul", "Attention"]
    # The first layer's FFN output projection (64 -> 32 in the tiny model) stays a float MatMul.
    assert len(info.fp32_nodes) == 1
    kept = [n for n in int8.node if n.name == info.fp32_nodes[0]]
    assert [n.op_type for n in kept] == ["MatMul"]
    weight = {i.name: list(i.dims) for i in int8.initializer}[kept[0].input[1]]
    assert weight == [64, 32]
    # Per-channel: each quantised weight has one scale per output column, not a single scalar.
    scales = {i.name: i for i in int8.initializer if i.name.endswith("_scale")}
    weight_scales = [
        onnx.numpy_helper.to_array(s) for n, s in scales.items() if "weight" in n or "MatMul" in n
    ]
    assert weight_scales and any(s.size > 1 for s in weight_scales)
    assert (model_dir / ONNX_DIR / INT8_FILE).stat().st_size < (
        model_dir / ONNX_DIR / FP32_FILE
    ).stat().st_size
    assert info.fp32_max_abs_diff < 1e-4
    assert info.int8_max_abs_diff is not None and info.int8_max_abs_diff > 0


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_the_float_node_is_in_the_first_layer(exported, arch):
    _, info = exported[arch]
    name = info.fp32_nodes[0]
    assert "layer.0/" in name and ("output/dense" in name or "ffn/lin2" in name)


def test_cli_refuses_a_directory_without_a_model(tmp_path, capsys):
    assert main(["--model", str(tmp_path)]) == EXIT_ERROR  # the one contract: 2 is an error, 1 only a gate refusal
    assert "not a model directory" in capsys.readouterr().err
    assert not (tmp_path / ONNX_DIR / INT8_FILE).exists()


def test_a_new_export_forgets_the_gate_results_of_the_old_graphs(tmp_path):
    from train.export import forget_stale_gates

    record = tmp_path / "gate.json"
    record.write_text(json.dumps({"torch": {"passed": True}, "onnx-int8": {"passed": True},
                                  "onnx-fp32": {"passed": False}}))
    forget_stale_gates(tmp_path)
    assert json.loads(record.read_text()) == {"torch": {"passed": True}}
    forget_stale_gates(tmp_path / "nowhere")  # no record: nothing to do


def test_a_byte_identical_re_export_keeps_its_int8_gate(exported, tmp_path):
    """`make setup` re-exports the shipped model; its committed int8 verdict must survive that, and only that."""
    from qa.backends import ONNX_INT8, resolve_backend_name
    from qa.files import file_sha256

    model_dir = tmp_path / "model"
    shutil.copytree(exported["bert"][0], model_dir)
    graph = model_dir / ONNX_DIR / INT8_FILE
    record = {ONNX_INT8: {"backend": ONNX_INT8, "passed": True, "graph_sha256": file_sha256(graph)}}
    (model_dir / "gate.json").write_text(json.dumps(record))
    shutil.rmtree(model_dir / ONNX_DIR)
    export_model(model_dir, log=lambda _msg: None)
    assert file_sha256(graph) == record[ONNX_INT8]["graph_sha256"]  # the export is deterministic
    assert json.loads((model_dir / "gate.json").read_text()) == record
    assert resolve_backend_name("auto", model_dir) == ONNX_INT8
    graph.write_bytes(graph.read_bytes() + b"\0")  # any other bytes have not been gated
    assert resolve_backend_name("auto", model_dir) != ONNX_INT8
