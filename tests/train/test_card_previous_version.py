"""The card's version-to-version table: the previous version's headline figures are kept from its own
files, and this version's are read by the same code."""

import json

import yaml
from helpers import make_tiny_model

from qa.model_dir import PREVIOUS_VERSION_FILE
from train.card import main


def model_dir(path, em, f1, int8_f1, int8_passed, threshold, wrong_pct, champion=None):
    make_tiny_model(path)
    config = {"model": {"name_or_path": "base"}, "data": {"train_file": "train.json", "validation_file": "dev.json"},
              "training": {"output_dir": str(path)}, "gate": {"exact_match": 0, "f1": 0}}
    (path / "train_config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.json").write_text(json.dumps({"exact_match": em, "f1": f1, "questions": 100,
                                                   "data_file": "dev.json", "backend": "onnx-fp32"}))
    gate = {"onnx-int8": {"passed": int8_passed, "checks": [{"metric": "f1", "measured": int8_f1}]},
            "onnx-fp32": {"passed": True, "champion": champion, "questions": 100, "checks": [],
                          "date": "2026-12-07T00:00:00Z", "cpu": "a CPU"}}
    (path / "gate.json").write_text(json.dumps(gate))
    (path / "qa.json").write_text(json.dumps({"null_threshold": threshold}))
    wrong = {"abstention_pct": wrong_pct, "questions": 100}
    (path / "calibration.json").write_text(json.dumps({"null_threshold": threshold, "wrong_context": wrong}))
    return path


def test_previous_figures_are_kept_and_compared(tmp_path):
    previous = model_dir(tmp_path / "v1", 70.0, 80.0, 79.6, True, 1.5, 99.5)
    comparison = {"champion": str(previous), "version": "1", "questions": 100, "challenger_f1": 82.5,
                  "champion_f1": 80.0, "difference": 2.5, "ci_low": 1.25, "ci_high": 3.75}
    current = model_dir(tmp_path / "v2", 72.0, 82.5, 82.1, False, 0.5, 99.25, champion=comparison)

    assert main(["--model", str(current), "--previous", str(previous)]) == 0
    snapshot = json.loads((current / PREVIOUS_VERSION_FILE).read_text())
    assert snapshot["figures"]["v11_dev_f1"] == 80.0 and snapshot["figures"]["v11_dev_f1_onnx_int8"] == 79.6
    card = (current / "README.md").read_text()
    assert "| SQuAD v1.1 dev F1 (fp32 graph) | 80.00 | 82.50 | +2.50 |" in card
    assert "| served no-answer threshold (logits) | 1.50 | 0.50 | -1.00 |" in card
    assert "| SQuAD v1.1 dev F1, onnx-int8 (gated) | 79.60 | - | - |" in card  # this version's int8 was refused
    assert "SQuAD 2.0" not in card.split("## Against the previous version")[1].split("##")[0]  # measured by neither
    assert "difference +2.50, 95 % interval +1.25 to +3.75" in card and "registry version 1" in card

    # The snapshot stays when the previous directory changes or goes: re-rendering reads only this directory.
    (previous / "metrics.json").unlink()
    assert main(["--model", str(current)]) == 0
    assert "| SQuAD v1.1 dev F1 (fp32 graph) | 80.00 | 82.50 | +2.50 |" in (current / "README.md").read_text()


def test_a_previous_directory_that_is_no_model_is_an_error(tmp_path, capsys):
    current = model_dir(tmp_path / "v2", 72.0, 82.5, 82.1, True, 0.5, 99.25)
    assert main(["--model", str(current), "--previous", str(tmp_path / "nothing")]) == 2
    assert "--previous" in capsys.readouterr().err and not (current / PREVIOUS_VERSION_FILE).exists()
