"""make tune: an Optuna search over the config's space writes the best parameters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_tiny_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_tune_writes_best_parameters_within_the_space(tmp_path, fixtures_dir):
    base = make_tiny_model(tmp_path / "base", "bert")
    data = str(fixtures_dir / "tiny_squad.json")
    config = {
        "model": {"name_or_path": str(base)},
        "data": {"train_file": data, "validation_file": data},
        "preprocessing": {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 24},
        "training": {"output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 8},
        "gate": {"exact_match": 0, "f1": 0},
        "tune": {"n_trials": 2, "max_train_examples": 17, "max_eval_examples": 17,
                 "learning_rate": [1.0e-3, 5.0e-3], "num_train_epochs": [2, 4],
                 "per_device_train_batch_size": [4, 8], "warmup_ratio": [0.0, 0.1],
                 "output_file": str(tmp_path / "best.json")},
    }
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "train.tune", "--config", str(tmp_path / "tune.yaml")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((tmp_path / "best.json").read_text())
    params = best["best_params"]
    assert best["n_trials"] == 2
    assert 1e-3 <= params["learning_rate"] <= 5e-3
    assert 2 <= params["num_train_epochs"] <= 4
    assert params["per_device_train_batch_size"] in (4, 8)
    assert 0.0 <= params["warmup_ratio"] <= 0.1
    assert 0.0 <= best["best_f1"] <= 100.0
