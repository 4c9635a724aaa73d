"""Packaging the shipped model: fp16 weights, no leftovers, scores of the stored weights, a card."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_pipeline import run_module, train_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, fixtures_dir):
    trained = train_tiny(tmp_path_factory.mktemp("package"), fixtures_dir)
    out = trained["root"] / "shipped"
    answers = trained["root"] / "answers.json"
    result = run_module("train.package", "--model", str(trained["model"]), "--out", str(out),
                        "--predictions", str(answers))
    return {"trained": trained["model"], "out": out, "config": trained["config"], "answers": answers,
            "summary": json.loads(result.stdout.strip().splitlines()[-1])}


def test_weights_are_float16_and_close_to_the_trained_ones(packaged):
    trained = load_file(str(packaged["trained"] / "model.safetensors"))
    shipped = load_file(str(packaged["out"] / "model.safetensors"))
    assert set(trained) == set(shipped)
    for name, tensor in shipped.items():
        assert tensor.dtype == np.float16, name
        assert np.allclose(tensor.astype(np.float32), trained[name], atol=1e-2, rtol=1e-3), name


def test_no_training_leftovers_and_no_dev_text(packaged):
    names = {p.name for p in packaged["out"].iterdir()}
    assert not any(n.startswith("checkpoint-") for n in names)
    assert "predictions.json" not in names  # it quotes dev contexts
    for wanted in ("config.json", "tokenizer.json", "qa.json", "metrics.json", "README.md", "train_config.yaml"):
        assert wanted in names, wanted


def test_metrics_are_those_of_the_stored_weights(packaged, fixtures_dir, tmp_path):
    metrics = json.loads((packaged["out"] / "metrics.json").read_text())
    assert metrics["packaged_from"]["weights"] == "float32"
    assert metrics["questions"] == 17 and metrics["training"]["train_windows"] >= 17
    assert metrics["backend"] == "onnx-fp32"  # the packaged directory is exported and scored on its fp32 graph
    run_module("train.evaluate", "--model", str(packaged["out"]), "--data", str(fixtures_dir / "tiny_squad.json"),
               "--out", str(tmp_path), "--backend", "onnx-fp32")
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert (again["exact_match"], again["f1"]) == (metrics["exact_match"], metrics["f1"])
    assert packaged["summary"]["f1"] == metrics["f1"]
    # The answers kept for the gate are the ones scored.
    assert json.loads(packaged["answers"].read_text()) == json.loads((tmp_path / "predictions.json").read_text())


def test_the_gate_reads_the_config_the_model_was_trained_with(packaged):
    # Editing that config moves the gate without any extra flag.
    config = packaged["config"]
    original = config.read_text()
    try:
        config.write_text(original.replace("f1: 60.0", "f1: 100.0"))
        result = run_module("train.gate", "--model", str(packaged["out"]), "--metrics",
                            str(packaged["out"] / "metrics.json"), check=False)
        assert result.returncode == 1 and f"thresholds from {config}" in result.stdout, result.stdout
    finally:
        config.write_text(original)
    result = run_module("train.gate", "--model", str(packaged["out"]), "--metrics",
                        str(packaged["out"] / "metrics.json"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_card_is_rendered_from_the_directory(packaged):
    run_module("train.card", "--model", str(packaged["out"]))
    metrics = json.loads((packaged["out"] / "metrics.json").read_text())
    card = (packaged["out"] / "README.md").read_text()
    assert f"| onnx-fp32 | {metrics['exact_match']:.2f} | {metrics['f1']:.2f} | 17 |" in card
    assert "float16" in card and metrics["training"]["train_sha256"] in card
    assert "| 1 |" in card  # the session table
    from huggingface_hub import ModelCard

    data = ModelCard.load(packaged["out"] / "README.md").data  # the YAML header tools and the Hub read
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {
        "exact_match": round(metrics["exact_match"], 2), "f1": round(metrics["f1"], 2)}
    assert data.pipeline_tag == "question-answering" and data.datasets == ["rajpurkar/squad"]


def test_packaging_a_directory_without_weights_is_an_error(tmp_path):
    result = run_module("train.package", "--model", str(tmp_path), "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 2 and "model.safetensors is missing" in result.stderr
