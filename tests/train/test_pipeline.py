"""End to end on a fixture: train -> evaluate -> score -> gate, for BERT and DistilBERT, DDP, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_tiny_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, model_dir: Path, output_dir: Path, fixtures_dir: Path, **training) -> Path:
    config = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(fixtures_dir / "tiny_squad.json"),
                 "validation_file": str(fixtures_dir / "tiny_squad.json")},
        "preprocessing": {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 24},
        "training": {"output_dir": str(output_dir), "learning_rate": 3.0e-3, "num_train_epochs": 30,
                     "per_device_train_batch_size": 8, "warmup_ratio": 0.0, "logging_steps": 5,
                     "save_total_limit": 1, **training},
        # The fixture is memorised, so a working pipeline clears these easily; chance does not.
        "gate": {"exact_match": 50.0, "f1": 60.0},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run_module(*args, check=True, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=600, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def train_tiny(root: Path, fixtures_dir: Path) -> dict:
    """A tiny random BERT trained on the fixture under root: {"root", "base", "config", "model"}."""
    base = make_tiny_model(root / "base", "bert")
    config = write_config(root / "tiny.yaml", base, root / "model", fixtures_dir, eval_each_epoch=False)
    run_module("train.train", "--config", str(config))
    return {"root": root, "base": base, "config": config, "model": root / "model"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fixtures_dir):
    return train_tiny(tmp_path_factory.mktemp("pipeline"), fixtures_dir)


def test_training_writes_a_complete_model_directory(trained):
    model = trained["model"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "qa.json", "metrics.json", "predictions.json",
                 "README.md", "training_curve.png", "train_config.yaml", "training_log.json"):
        assert (model / name).is_file(), name
    assert (model / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["questions"] == 17
    assert metrics["training"]["train_windows"] >= 17
    assert len(metrics["data_sha256"]) == 64
    card = (model / "README.md").read_text()
    assert f"| torch | {metrics['exact_match']:.2f} | {metrics['f1']:.2f} | 17 |" in card
    assert metrics["training"]["train_sha256"] in card


def test_evaluate_then_score_agree(trained, fixtures_dir, tmp_path):
    data = fixtures_dir / "tiny_squad.json"
    run_module("train.evaluate", "--model", str(trained["model"]), "--data", str(data), "--out", str(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert set(predictions) == {q["id"] for a in json.loads(data.read_text())["data"]
                                for p in a["paragraphs"] for q in p["qas"]}
    scored = json.loads(run_module("train.score", "--data", str(data), "--predictions",
                                   str(tmp_path / "predictions.json")).stdout)
    assert scored == {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}
    # The final evaluation written by training is the same engine on the same files.
    assert metrics["f1"] == json.loads((trained["model"] / "metrics.json").read_text())["f1"]


def test_gate_passes_the_trained_model(trained):
    result = run_module("train.gate", "--model", str(trained["model"]), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    assert result.stdout.count("pass") >= 2
    record = json.loads((trained["model"] / "gate.json").read_text())
    assert record["torch"]["passed"] is True
    assert f"{len(os.sched_getaffinity(0))} cores" in record["torch"]["cpu"]  # where the verdict was measured


def test_gate_refuses_an_untrained_model(trained):
    result = run_module("train.gate", "--model", str(trained["base"]), "--config", str(trained["config"]),
                        check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED" in result.stdout and "FAIL" in result.stdout


def test_gate_on_a_metrics_file(trained, tmp_path):
    low = tmp_path / "low.json"
    low.write_text(json.dumps({"exact_match": 10.0, "f1": 90.0, "backend": "torch"}))
    result = run_module("train.gate", "--model", str(trained["model"]), "--metrics", str(low), check=False)
    assert result.returncode == 1
    assert "exact_match" in result.stdout and "FAIL" in result.stdout


def test_a_broken_metrics_file_is_an_error_not_a_refusal(trained, tmp_path):
    broken = tmp_path / "broken.json"
    for payload in ({"f1": 90.0}, ["not", "an", "object"], {"exact_match": "high", "f1": 1.0}):
        broken.write_text(json.dumps(payload))
        result = run_module("train.gate", "--model", str(trained["model"]), "--metrics", str(broken), check=False)
        assert result.returncode == 2, (payload, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ")


def test_int8_gate_refuses_a_reference_scored_on_other_questions(trained, tmp_path):
    metrics = json.loads((trained["model"] / "metrics.json").read_text())
    other = {**metrics, "backend": "onnx-int8", "questions": metrics["questions"] - 1}
    path = tmp_path / "int8.json"
    path.write_text(json.dumps(other))
    result = run_module("train.gate", "--model", str(trained["model"]), "--metrics", str(path), check=False)
    assert result.returncode == 2
    assert "scored on different questions" in result.stderr


def test_limit_must_be_positive(trained, fixtures_dir, tmp_path):
    result = run_module("train.evaluate", "--model", str(trained["model"]), "--data",
                        str(fixtures_dir / "tiny_squad.json"), "--out", str(tmp_path), "--limit", "0", check=False)
    assert result.returncode == 2 and "must be at least 1" in result.stderr


def test_retraining_drops_graphs_and_gate_results_of_the_old_weights(trained, tmp_path, fixtures_dir):
    out = tmp_path / "model"
    shutil.copytree(trained["model"], out)
    (out / "onnx").mkdir(exist_ok=True)
    (out / "onnx" / "model.int8.onnx").write_bytes(b"stale")
    (out / "gate.json").write_text(json.dumps({"onnx-int8": {"passed": True}}))
    config = write_config(tmp_path / "again.yaml", trained["base"], out, fixtures_dir, num_train_epochs=1,
                          eval_each_epoch=False)
    run_module("train.train", "--config", str(config))
    assert not (out / "onnx").exists() and not (out / "gate.json").exists()


def test_gate_without_thresholds_is_a_clear_error(trained):
    result = run_module("train.gate", "--model", str(trained["base"]), check=False)
    assert result.returncode == 2
    assert "no gate thresholds" in result.stderr


def test_distilbert_trains_and_answers(tmp_path, fixtures_dir):
    base = make_tiny_model(tmp_path / "base", "distilbert")
    config = write_config(tmp_path / "d.yaml", base, tmp_path / "model", fixtures_dir, num_train_epochs=30,
                          eval_each_epoch=False)
    run_module("train.train", "--config", str(config))
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["f1"] >= 60.0


def test_ddp_two_cpu_processes(tmp_path, fixtures_dir):
    """torchrun with 2 gloo processes: each sees half the data, so half the steps per epoch."""
    base = make_tiny_model(tmp_path / "base", "bert")
    config = write_config(tmp_path / "ddp.yaml", base, tmp_path / "model", fixtures_dir, num_train_epochs=2,
                          per_device_train_batch_size=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free port, so parallel runs never collide.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    process = subprocess.Popen([*torchrun, "-m", "train.train", "--config", str(config)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # take the worker processes down too
        output, _ = process.communicate()
        raise AssertionError(f"DDP run did not finish in 300 s:\n{output[-3000:]}") from None
    assert process.returncode == 0, output[-3000:]
    log = json.loads((tmp_path / "model" / "training_log.json").read_text())
    final_step = max(entry["step"] for entry in log)
    windows = 17  # one window per fixture question at max_seq_length 64
    per_epoch = -(-windows // (4 * 2))
    assert final_step == 2 * per_epoch
    assert (tmp_path / "model" / "metrics.json").is_file()


def test_resume_continues_from_the_last_checkpoint(tmp_path, fixtures_dir):
    base = make_tiny_model(tmp_path / "base", "bert")
    out = tmp_path / "model"
    first = write_config(tmp_path / "a.yaml", base, out, fixtures_dir, num_train_epochs=2, save_total_limit=3)
    run_module("train.train", "--config", str(first))
    # Same run, longer: it must restart from checkpoint-6 (2 epochs x 3 steps), not from scratch.
    longer = write_config(tmp_path / "b.yaml", base, out, fixtures_dir, num_train_epochs=4, save_total_limit=3)
    run_module("train.train", "--config", str(longer), "--resume")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"].endswith("checkpoint-6")
    log = json.loads((out / "training_log.json").read_text())
    assert max(entry["step"] for entry in log) == 12


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, fixtures_dir):
    base = make_tiny_model(tmp_path / "base", "bert")
    config = write_config(tmp_path / "c.yaml", base, tmp_path / "empty", fixtures_dir)
    result = run_module("train.train", "--config", str(config), "--resume", check=False)
    assert result.returncode == 2
    assert "no complete checkpoint" in result.stderr
