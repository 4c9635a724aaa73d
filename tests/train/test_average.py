"""Checkpoint averaging: the mean of the newest checkpoints, judged on the held-out articles only."""

import json
import shutil

import numpy as np
import pytest
import yaml
from helpers import make_tiny_model
from safetensors.numpy import load_file

from qa.model_dir import HELDOUT_FILE, TRAIN_CONFIG_FILE, WEIGHTS_FILE
from train.average import AVERAGE_REPORT, average, main, newest_checkpoints


@pytest.fixture()
def run_dir(tmp_path, fixtures_dir):
    """A run directory with three checkpoints of different weights; its final weights are the last one's."""
    run = make_tiny_model(tmp_path / "run", seed=0)
    for step, seed in ((10, 1), (20, 2), (30, 3)):
        make_tiny_model(run / f"checkpoint-{step}", seed=seed)
    shutil.copy(run / "checkpoint-30" / WEIGHTS_FILE, run / WEIGHTS_FILE)
    (run / "metrics.json").write_text(json.dumps({"exact_match": 1.0, "f1": 2.0, "training": {"global_step": 30}}))
    (run / "checkpoint-5").mkdir()  # no weights: not a checkpoint to average
    data = str(fixtures_dir / "tiny_squad.json")
    config = {"model": {"name_or_path": "m"}, "data": {"train_file": data, "validation_file": data},
              "training": {"output_dir": str(run)}, "gate": {"exact_match": 0, "f1": 0}}
    (run / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(config))
    (run / HELDOUT_FILE).write_text(json.dumps({"titles": ["Lighthouses", "Bakery"]}))
    return run


def test_the_newest_checkpoints_by_step_are_averaged(run_dir, tmp_path):
    assert [p.name for p in newest_checkpoints(run_dir, 2)] == ["checkpoint-20", "checkpoint-30"]
    report = average(run_dir, 2, tmp_path / "avg")
    mean = load_file(tmp_path / "avg" / WEIGHTS_FILE)
    for name, tensor in load_file(run_dir / "checkpoint-30" / WEIGHTS_FILE).items():
        other = load_file(run_dir / "checkpoint-20" / WEIGHTS_FILE)[name]
        np.testing.assert_allclose(mean[name], (tensor + other) / 2, rtol=1e-6, atol=1e-7)
    assert not list((tmp_path / "avg").glob("checkpoint-*"))
    assert report["model"]["questions"] == report["average"]["questions"] > 0
    assert report["f1_change"] == round(report["average"]["f1"] - report["model"]["f1"], 2)
    assert json.loads((tmp_path / "avg" / AVERAGE_REPORT).read_text()) == report
    # The run weights' scores are not the average's: only the training record and the averaging stay.
    metrics = json.loads((tmp_path / "avg" / "metrics.json").read_text())
    assert metrics["training"] == {"global_step": 30} and "f1" not in metrics
    assert metrics["averaged_checkpoints"]["average_f1"] == report["average"]["f1"]


def test_the_exit_code_says_whether_the_average_helps(run_dir, tmp_path, capsys):
    code = main(["--model", str(run_dir), "--last", "3", "--out", str(tmp_path / "avg")])
    report = json.loads((tmp_path / "avg" / AVERAGE_REPORT).read_text())
    assert code == (0 if report["f1_change"] > 0 else 1)
    assert "held-out F1" in capsys.readouterr().out


def test_too_few_checkpoints_is_an_error_that_names_them(run_dir, tmp_path, capsys):
    assert main(["--model", str(run_dir), "--last", "4", "--out", str(tmp_path / "avg")]) == 2
    err = capsys.readouterr().err
    assert "--last 4 needs 4 checkpoints" in err and "checkpoint-10, checkpoint-20, checkpoint-30" in err


def test_a_weight_space_ensemble_with_another_model_takes_its_share_of_each_weight(run_dir, tmp_path, capsys):
    other = make_tiny_model(tmp_path / "champion", seed=7)
    code = main(["--model", str(run_dir), "--with-model", str(other), "--share", "0.25",
                 "--out", str(tmp_path / "mix")])
    mixed, run = load_file(tmp_path / "mix" / WEIGHTS_FILE), load_file(run_dir / WEIGHTS_FILE)
    for name, tensor in load_file(other / WEIGHTS_FILE).items():
        np.testing.assert_allclose(mixed[name], 0.75 * run[name] + 0.25 * tensor, rtol=1e-5, atol=1e-6)
    report = json.loads((tmp_path / "mix" / AVERAGE_REPORT).read_text())
    assert report["shares"] == [0.75, 0.25] and code == (0 if report["f1_change"] > 0 else 1)
    ensemble = json.loads((tmp_path / "mix" / "metrics.json").read_text())["weight_ensemble"]
    assert ensemble["champion_share"] == 0.25 and ensemble["average_f1"] == report["average"]["f1"]
    assert f"0.25 of {other}'s weights" in capsys.readouterr().out


@pytest.mark.parametrize("share", ["0", "1", "1.5"])
def test_a_share_outside_zero_to_one_is_an_error_that_quotes_it(run_dir, tmp_path, capsys, share):
    other = make_tiny_model(tmp_path / "champion", seed=7)
    assert main(["--model", str(run_dir), "--with-model", str(other), "--share", share,
                 "--out", str(tmp_path / "mix")]) == 2
    assert f"--share must lie strictly between 0 and 1, got {float(share)}" in capsys.readouterr().err
