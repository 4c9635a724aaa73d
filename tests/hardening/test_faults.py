"""Faults: a killed worker, SIGTERM with a request in flight, a broken model, training killed mid-epoch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from gunicorn_server import POLL_S, ROOT, START_TIMEOUT_S

from bench.procfs import children

pytestmark = pytest.mark.slow

CHECKPOINT_POLL_S = 0.005  # a tiny model trains a step in milliseconds
QUESTION = "Who built the lighthouse?"
CONTEXT = "The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt. It is 31 metres tall."


def wait_for_file(path: Path, timeout: float = 60, process=None) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        if process is not None:
            assert process.poll() is None, f"the process exited ({process.returncode}) before {path} appeared"
        time.sleep(POLL_S)
    return path


def ask(server, question: str = QUESTION, timeout: float = 60):
    status, _, raw = server.request(
        "POST", "/v1/answer", {"question": question, "context": CONTEXT}, timeout=timeout
    )
    return status, raw


def start_holding_server(start_gunicorn, model_dir: Path, hold_dir: Path, workers: int, **env: str):
    hold_dir.mkdir(exist_ok=True)
    server = start_gunicorn(
        app="holding_wsgi:app",
        QA_MODEL_DIR=str(model_dir),
        QA_BACKEND="torch",
        QA_TEST_HOLD_DIR=str(hold_dir),
        WEB_CONCURRENCY=str(workers),
        GUNICORN_THREADS="2",
        QA_THREADS="1",
        **env,
    )
    server.wait_ready()
    return server


def test_a_killed_worker_is_replaced_and_requests_elsewhere_succeed(start_gunicorn, tiny_bert_dir, tmp_path):
    hold_dir = tmp_path / "hold"
    server = start_holding_server(start_gunicorn, tiny_bert_dir, hold_dir, workers=2)
    workers = server.wait_for_workers(2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # A request in flight in one worker ...
        in_flight = pool.submit(ask, server, "hold: survivor")
        holder = int(wait_for_file(hold_dir / "survivor.started").read_text())
        assert holder in workers
        # ... while the other worker is killed outright.
        (victim,) = [pid for pid in workers if pid != holder]
        os.kill(victim, signal.SIGKILL)
        # Requests meanwhile are served by the surviving worker (its second thread).
        for _ in range(5):
            status, raw = ask(server)
            assert status == 200, raw
        (hold_dir / "survivor.release").touch()
        status, raw = in_flight.result(timeout=60)
    assert status == 200, raw
    assert json.loads(raw)["answer"] in CONTEXT
    # The master replaces the dead worker; the new one loads the model and answers too.
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        current = children(server.process.pid)
        if len(current) == 2 and victim not in current:
            break
        assert time.monotonic() < deadline, f"worker {victim} was not replaced: {current}\n{server.log()}"
        time.sleep(POLL_S)
    (replacement,) = set(current) - {holder}
    assert wait_for_worker_log(server, f"Booting worker with pid: {replacement}")
    for _ in range(10):
        assert ask(server)[0] == 200
    assert server.process.poll() is None
    assert f"Worker (pid:{victim}) was sent SIGKILL" in server.log()


def wait_for_worker_log(server, text: str, timeout: float = START_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while text not in "".join(server.stderr):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def test_sigterm_drains_the_request_in_flight_then_exits_0(start_gunicorn, tiny_bert_dir, tmp_path):
    hold_dir = tmp_path / "hold"
    server = start_holding_server(start_gunicorn, tiny_bert_dir, hold_dir, workers=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(ask, server, "hold: drain")
        wait_for_file(hold_dir / "drain.started")
        server.terminate()
        # The master stops accepting and tells the worker to finish; the request is still held.
        assert wait_for_worker_log(server, "Handling signal: term"), server.log()
        assert not in_flight.done()
        (hold_dir / "drain.release").touch()
        status, raw = in_flight.result(timeout=60)
    assert status == 200, raw
    assert json.loads(raw)["answer"] in CONTEXT
    assert server.finish(timeout=60) == 0, server.log()
    access = [json.loads(line) for line in server.stdout if line.startswith("{")]
    assert [r["status"] for r in access if r["path"] == "/v1/answer"] == [200]
    assert "Shutting down: Master" in server.log()


# ---------------------------------------------------------------- broken models


def truncate_weights(model: Path) -> str:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return "model.safetensors is truncated"


def garble_weights(model: Path) -> str:
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    return "model.safetensors is corrupt"


def remove_weights(model: Path) -> str:
    (model / "model.safetensors").unlink()
    return "no weights file"


def garble_tokenizer(model: Path) -> str:
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    return "tokenizer.json is unreadable"


def garble_config(model: Path) -> str:
    (model / "config.json").write_text("{not json")
    return "config.json is not valid"


@pytest.mark.parametrize(
    "break_model", [remove_weights, truncate_weights, garble_weights, garble_tokenizer, garble_config]
)
def test_a_missing_or_corrupt_model_file_stops_startup_before_listening(
    start_gunicorn, tiny_bert_dir, tmp_path, break_model
):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    problem = break_model(model)
    server = start_gunicorn(QA_MODEL_DIR=str(model), QA_BACKEND="torch")
    assert server.finish(timeout=START_TIMEOUT_S) == 1, server.log()
    assert len(server.stderr) == 1, server.log()
    line = server.stderr[0]
    assert line.startswith(f"error: cannot load model from {model}: ") and problem in line, line
    assert server.port is None  # it never listened, so no client ever saw a half-ready server


def test_weights_that_do_not_fit_the_config_stop_the_server_without_serving(
    start_gunicorn, tiny_bert_dir, tmp_path
):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    # Structurally valid files (the master's cheap check passes); only loading the weights finds it.
    config = json.loads((model / "config.json").read_text())
    config["hidden_size"] = 64
    (model / "config.json").write_text(json.dumps(config))
    server = start_gunicorn(QA_MODEL_DIR=str(model), QA_BACKEND="torch")
    code = server.finish(timeout=START_TIMEOUT_S)
    assert code == 4, server.log()
    errors = [line for line in server.stderr if line.startswith("error: ")]
    assert len(errors) == 1 and f"cannot load model from {model}" in errors[0], server.log()
    assert not [line for line in server.stdout if line.startswith("{")]  # no request was ever served


# ---------------------------------------------------------------- training killed mid-epoch


def write_training_config(path: Path, base: Path, output_dir: Path, fixtures_dir: Path) -> Path:
    """The tiny pipeline config of tests/train/test_pipeline.py: 17 windows, 3 steps per epoch."""
    config = {
        "model": {"name_or_path": str(base)},
        "data": {
            "train_file": str(fixtures_dir / "tiny_squad.json"),
            "validation_file": str(fixtures_dir / "tiny_squad.json"),
        },
        "preprocessing": {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 24},
        "training": {
            "output_dir": str(output_dir),
            "learning_rate": 3.0e-3,
            "num_train_epochs": 12,
            "per_device_train_batch_size": 8,
            "warmup_ratio": 0.0,
            "logging_steps": 3,
            "save_total_limit": 2,
            "eval_each_epoch": False,
        },
        "gate": {"exact_match": 50.0, "f1": 60.0},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "train.train", "--config", str(config), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    return process


def test_training_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path, fixtures_dir):
    from helpers import make_tiny_model

    base = make_tiny_model(tmp_path / "base", "bert")
    whole = tmp_path / "whole"
    train(write_training_config(tmp_path / "whole.yaml", base, whole, fixtures_dir))

    interrupted = tmp_path / "interrupted"
    config = write_training_config(tmp_path / "interrupted.yaml", base, interrupted, fixtures_dir)
    process = train(config, wait=False)
    try:
        # trainer_state.json is the last file a checkpoint gets: wait for the first complete checkpoint,
        # of whatever step (save_total_limit deletes old ones, and on a fast CPU checkpoint-3 lives
        # only a few steps), polling often enough to kill the run well before its end.
        deadline = time.monotonic() + 300
        while not any(interrupted.glob("checkpoint-*/trainer_state.json")):
            assert time.monotonic() < deadline, f"no complete checkpoint appeared in {interrupted}"
            assert process.poll() is None, f"the process exited ({process.returncode}) before any checkpoint"
            time.sleep(CHECKPOINT_POLL_S)
        process.kill()  # SIGKILL: no clean-up, as in a lost machine
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (interrupted / "metrics.json").exists()  # it really stopped before the end
    # The kill may land while a later checkpoint is half written; resume must use the newest complete one.
    checkpoints = sorted(int(p.name.split("-")[1]) for p in interrupted.glob("checkpoint-*")
                         if (p / "trainer_state.json").is_file())
    assert checkpoints and max(checkpoints) < 36, checkpoints

    train(config, "--resume")
    resumed = json.loads((interrupted / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    assert resumed["training"]["resumed_from"].endswith(f"checkpoint-{max(checkpoints)}")
    log = json.loads((interrupted / "training_log.json").read_text())
    assert max(entry["step"] for entry in log) == 36  # 12 epochs x 3 steps, not restarted from 0
    # Same data order and RNG state after the resume: the same model within floating-point noise.
    for metric in ("exact_match", "f1"):
        assert abs(resumed[metric] - reference[metric]) <= 100 / 17 + 1e-9, (metric, resumed, reference)
    final_loss = {
        name: [e["loss"] for e in json.loads((d / "training_log.json").read_text()) if "loss" in e][-1]
        for name, d in (("resumed", interrupted), ("whole", whole))
    }
    assert final_loss["resumed"] == pytest.approx(final_loss["whole"], rel=1e-3), final_loss
    print(
        f"whole run: {reference['exact_match']:.2f} EM {reference['f1']:.2f} F1; "
        f"killed after checkpoint-{max(checkpoints)} and resumed: {resumed['exact_match']:.2f} EM "
        f"{resumed['f1']:.2f} F1; final loss {final_loss}"
    )


def test_resume_skips_a_checkpoint_cut_off_mid_write(tmp_path, fixtures_dir):
    from helpers import make_tiny_model

    base = make_tiny_model(tmp_path / "base", "bert")
    out = tmp_path / "model"
    config = write_training_config(tmp_path / "c.yaml", base, out, fixtures_dir)
    short = yaml.safe_load(config.read_text())
    short["training"]["num_train_epochs"] = 2
    config.write_text(yaml.safe_dump(short))
    train(config)
    # What a kill during the next save leaves behind: the directory, without trainer_state.json.
    partial = out / "checkpoint-9"
    partial.mkdir()
    shutil.copy(out / "checkpoint-6" / "config.json", partial / "config.json")
    short["training"]["num_train_epochs"] = 4
    config.write_text(yaml.safe_dump(short))
    train(config, "--resume")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"].endswith("checkpoint-6")
