"""The champion-versus-challenger gate: the paired bootstrap decides, the absolute thresholds stay a floor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from qa.model_dir import CALIBRATION_FILE, GATE_RECORD, METRICS_FILE, PREDICTIONS_FILE, load_params
from train.compare import paired_difference
from train.config import ConfigError, config_from_dict
from train.data import load_squad

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "minilm-l6-squad"


def test_paired_difference_reads_worse_same_and_better():
    rng = np.random.default_rng(0)
    champion = rng.uniform(0, 100, 2000)
    worse = paired_difference(np.clip(champion - rng.uniform(0, 4, 2000), 0, 100), champion)
    assert worse.worse_beyond_noise and worse.ci_low <= worse.difference <= worse.ci_high < 0
    noisy = paired_difference(np.clip(champion + rng.normal(0, 5, 2000), 0, 100), champion)
    assert not noisy.worse_beyond_noise and not noisy.better_beyond_noise
    same = paired_difference(champion, champion)
    assert (same.difference, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    assert paired_difference(champion + 1, champion).better_beyond_noise
    with pytest.raises(ValueError, match="one length"):
        paired_difference(champion[:10], champion)


@pytest.mark.parametrize("field, value, problem", [
    ("champion", "maybe", "gate.champion: must be one of not_worse, better, off"),
    ("max_f1_drop_vs_champion", -1, "gate.max_f1_drop_vs_champion: must be 0 or more"),
    ("min_wrong_context_abstention_pct", 120, "gate.min_wrong_context_abstention_pct: must be between 0 and 100"),
    # What YAML makes of an unquoted `champion: off`.
    ("champion", yaml.safe_load("champion: off")["champion"], "gate.champion: must be a string, got False: "
     "YAML reads an unquoted off/on/no/yes as a boolean, so quote it"),
])
def test_bad_champion_settings_name_the_field(field, value, problem):
    raw = {"model": {"name_or_path": "x"}, "data": {"train_file": "t", "validation_file": "v"},
           "training": {"output_dir": "o"}, "gate": {"exact_match": 0, "f1": 0, field: value}}
    with pytest.raises(ConfigError, match=problem):
        config_from_dict(raw, "c.yaml")


@pytest.fixture(scope="module")
def champion_predictions(fixtures_dir):
    if not (SHIPPED / "config.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the shipped model is missing: {SHIPPED}")
        pytest.skip(f"the shipped model is missing: {SHIPPED}")
    from train.evaluate import evaluate_model

    return evaluate_model(SHIPPED, fixtures_dir / "tiny_squad.json", "torch", show_progress=False)


def challenger(tmp_path: Path, fixtures_dir: Path, predictions: dict, rule: str, extra: str = "") -> tuple[Path, Path]:
    """A directory that claims `predictions` on the fixture (its metrics.json and predictions.json), and
    a config with zero thresholds, so only the champion comparison can refuse it."""
    from train.data import references
    from train.metrics.squad_v1 import compute_score

    directory = tmp_path / "challenger"
    shutil.copytree(SHIPPED, directory, ignore=shutil.ignore_patterns("onnx", "openvino", "eval", GATE_RECORD))
    data = fixtures_dir / "tiny_squad.json"
    scores = compute_score(references(load_squad(data)), predictions)
    metrics = {**scores, "backend": "torch", "data_file": str(data), "limit": None, "questions": len(predictions)}
    (directory / METRICS_FILE).write_text(json.dumps(metrics))
    (directory / PREDICTIONS_FILE).write_text(json.dumps(predictions))
    config = tmp_path / "gate.yaml"
    config.write_text(f"model: {{name_or_path: {SHIPPED}}}\n"
                      f"data: {{train_file: {data}, validation_file: {data}}}\n"
                      f"training: {{output_dir: {directory}}}\n"
                      f"gate: {{exact_match: 0.0, f1: 0.0, champion: {rule}{extra}}}\n")
    return directory, config


def gate(directory: Path, config: Path, champion, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train.gate", "--model", str(directory), "--metrics", str(directory / METRICS_FILE),
         "--config", str(config), "--champion", str(champion), *extra],
        cwd=ROOT, env={**os.environ, "DISABLE_MLFLOW_INTEGRATION": "TRUE", "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=300)


def test_a_challenger_worse_beyond_noise_is_refused_above_the_floor(tmp_path, fixtures_dir, champion_predictions):
    predictions, _ = champion_predictions
    directory, config = challenger(tmp_path, fixtures_dir, {qid: "" for qid in predictions}, "not_worse")
    result = gate(directory, config, SHIPPED)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "f1_vs_champion_ci_high" in result.stdout and "REFUSED" in result.stdout
    assert "95 % interval" in result.stdout  # the paired difference and its interval are printed
    record = json.loads((directory / GATE_RECORD).read_text())["torch"]
    # named as the repository names it: the record travels with the model directory
    assert record["champion"]["champion"] == str(SHIPPED.relative_to(ROOT)) and record["champion"]["ci_high"] < 0


def test_the_champions_own_answers_are_not_worse_but_not_better(tmp_path, fixtures_dir, champion_predictions):
    predictions, _ = champion_predictions
    directory, config = challenger(tmp_path, fixtures_dir, predictions, "not_worse")
    assert gate(directory, config, SHIPPED).returncode == 0
    directory, config = challenger(tmp_path / "b", fixtures_dir, predictions, "better")
    result = gate(directory, config, SHIPPED)
    assert result.returncode == 1 and "f1_vs_champion_ci_low" in result.stdout


def test_a_drop_bound_compares_with_the_champion_even_with_the_bootstrap_rule_off(tmp_path, fixtures_dir,
                                                                                 champion_predictions):
    predictions, _ = champion_predictions
    first = next(iter(predictions))
    slightly_worse = {**predictions, first: ""}  # one question of the fixture lost: a drop of a few F1 points
    bound = ", max_f1_drop_vs_champion: 0.5"
    directory, config = challenger(tmp_path, fixtures_dir, slightly_worse, '"off"', bound)
    result = gate(directory, config, SHIPPED)
    assert result.returncode == 1 and "f1_drop_vs_champion" in result.stdout, result.stdout + result.stderr
    directory, config = challenger(tmp_path / "b", fixtures_dir, predictions, '"off"', bound)
    result = gate(directory, config, SHIPPED)
    assert result.returncode == 0 and "f1_drop_vs_champion" in result.stdout, result.stdout + result.stderr


def test_gold_answers_are_better_beyond_noise(tmp_path, fixtures_dir, champion_predictions, tiny_bert_dir):
    gold = {e.id: e.answer_texts[0] for e in load_squad(fixtures_dir / "tiny_squad.json")}
    directory, config = challenger(tmp_path, fixtures_dir, gold, "better")
    # An untrained champion leaves room to be better (the shipped model answers every fixture question).
    result = gate(directory, config, tiny_bert_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "f1_vs_champion_ci_low" in result.stdout
    assert gate(directory, config, "none").returncode == 0  # no champion: the floor alone


def test_answers_kept_elsewhere_serve_the_comparison_and_stale_ones_are_refused(tmp_path, fixtures_dir,
                                                                              champion_predictions):
    predictions, _ = champion_predictions
    directory, config = challenger(tmp_path, fixtures_dir, {qid: "" for qid in predictions}, "not_worse")
    kept = tmp_path / "answers.json"
    (directory / PREDICTIONS_FILE).rename(kept)  # a packaged directory keeps no answers; the packager kept them here
    result = gate(directory, config, SHIPPED, "--predictions", str(kept))
    assert result.returncode == 1 and "f1_vs_champion_ci_high" in result.stdout, result.stdout + result.stderr

    kept.write_text(json.dumps(predictions))  # another model's answers: they do not give these metrics' F1
    result = gate(directory, config, SHIPPED, "--predictions", str(kept))
    assert result.returncode == 2 and "not the answers those metrics were computed from" in result.stderr


def test_wrong_context_abstention_is_a_floor_read_from_the_calibration_of_the_served_threshold(
        tmp_path, fixtures_dir, champion_predictions):
    predictions, _ = champion_predictions
    directory, config = challenger(tmp_path, fixtures_dir, predictions, "not_worse",
                                   ", min_wrong_context_abstention_pct: 99.0")
    served_threshold = load_params(directory).null_threshold

    def calibrated(wrong_pct: float, threshold: float = served_threshold) -> None:
        (directory / CALIBRATION_FILE).write_text(json.dumps(
            {"served": {"null_threshold": threshold, "wrong_abstention_pct": wrong_pct}}))

    calibrated(99.5)
    result = gate(directory, config, "none")
    assert result.returncode == 0 and "wrong_context_abstention_pct  >= 99.00" in result.stdout, result.stdout
    calibrated(98.16)  # a better reader that answers from the wrong document more often
    result = gate(directory, config, "none")
    assert result.returncode == 1 and "REFUSED" in result.stdout, result.stdout + result.stderr
    assert "98.16     FAIL" in result.stdout
    calibrated(99.5, threshold=served_threshold + 1.0)  # measured at another threshold than qa.json's
    result = gate(directory, config, "none")
    assert result.returncode == 2 and "stale" in result.stderr and CALIBRATION_FILE in result.stderr
    (directory / CALIBRATION_FILE).unlink()
    result = gate(directory, config, "none")
    assert result.returncode == 2 and f"{directory / CALIBRATION_FILE}: missing" in result.stderr
    assert "train.calibrate" in result.stderr


def test_answers_for_the_gate_are_kept_outside_the_shipped_directory(tmp_path):
    from train.package import PackageError, package

    with pytest.raises(PackageError, match="keep it outside"):
        package(SHIPPED, tmp_path / "out", predictions_file=tmp_path / "out" / "answers.json")
