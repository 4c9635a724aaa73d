"""Rebuilding a lost checkpoint from a model directory: same weights, schedule and data order."""

import json
import shutil
from itertools import count
from pathlib import Path

import pytest
import torch
import yaml
from helpers import make_tiny_model
from test_pipeline import write_config
from test_time_box import losses_by_step, weights

from qa.model_dir import SESSIONS_FILE
from train.config import load_config
from train.recover import main as recover_main
from train.recover import rebuild_checkpoint
from train.train import run
from train.trainer import TimeBox

pytestmark = pytest.mark.slow

OPTIONS = dict(num_train_epochs=3, per_device_train_batch_size=4, logging_steps=1, eval_each_epoch=False,
               group_by_length=True, save_total_limit=3, learning_rate=1.0e-3, warmup_ratio=0.0)


def write_dropout_free_config(path, base, output_dir, fixtures_dir, **training):
    """The rebuilt checkpoint carries no RNG state of the run, so the comparison needs a model without dropout."""
    write_config(path, base, output_dir, fixtures_dir, **training)
    config = yaml.safe_load(path.read_text())
    config["model"]["dropout"] = 0.0
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fixtures_dir):
    root = tmp_path_factory.mktemp("recover")
    base = make_tiny_model(root / "base", "bert")
    boxed = root / "boxed"
    boxed_config = write_dropout_free_config(root / "boxed.yaml", base, boxed, fixtures_dir,
                                             max_train_minutes=7.5, **OPTIONS)
    torch.set_num_threads(1)
    ticks = count()
    mp = pytest.MonkeyPatch()
    mp.setattr(TimeBox, "clock", staticmethod(lambda: 60.0 * next(ticks)))
    try:
        run(boxed_config)
    finally:
        mp.undo()
    step = json.loads((boxed / SESSIONS_FILE).read_text())[-1]["to_step"]
    real_checkpoint = boxed / f"checkpoint-{step}"
    # The "shipped" directory: the interim model without any checkpoint.
    source = root / "shipped"
    shutil.copytree(boxed, source, ignore=shutil.ignore_patterns("checkpoint-*", "runs"))

    rebuilt = root / "rebuilt"
    rebuilt_config = write_dropout_free_config(root / "rebuilt.yaml", base, rebuilt, fixtures_dir, **OPTIONS)
    checkpoint = rebuild_checkpoint(rebuilt_config, source, prime_batches=2)
    rebuilt_state = {
        "optimizer": torch.load(checkpoint / "optimizer.pt", weights_only=True),
        "scheduler": torch.load(checkpoint / "scheduler.pt", weights_only=True),
        "trainer": json.loads((checkpoint / "trainer_state.json").read_text()),
    }
    real_scheduler = torch.load(real_checkpoint / "scheduler.pt", weights_only=True)
    torch.set_num_threads(1)
    run(boxed_config, resume=True)  # the real resume: the uninterrupted run's trajectory
    torch.set_num_threads(1)
    run(rebuilt_config, resume=True)
    return {"step": step, "source": source, "checkpoint": checkpoint, "rebuilt": rebuilt, "boxed": boxed,
            "rebuilt_state": rebuilt_state, "real_scheduler": real_scheduler, "config": rebuilt_config}


def test_the_rebuilt_checkpoint_holds_the_source_weights_and_the_schedule_at_its_step(runs):
    assert runs["checkpoint"].name == f"checkpoint-{runs['step']}"
    source, rebuilt = weights(runs["source"]), weights(runs["checkpoint"])
    assert source.keys() == rebuilt.keys()
    for name in source:  # priming the optimizer moved no weight
        assert (source[name] == rebuilt[name]).all(), name
    assert runs["rebuilt_state"]["scheduler"]["last_epoch"] == runs["real_scheduler"]["last_epoch"] == runs["step"]
    assert runs["rebuilt_state"]["scheduler"]["_last_lr"] == pytest.approx(runs["real_scheduler"]["_last_lr"])
    state = runs["rebuilt_state"]["optimizer"]["state"]
    assert state and all(int(s["step"]) == 2 for s in state.values())
    assert all(float(s["exp_avg_sq"].sum()) > 0 for s in state.values())  # moments from real gradients
    trainer_state = runs["rebuilt_state"]["trainer"]
    assert trainer_state["global_step"] == runs["step"] and trainer_state["max_steps"] == 15
    assert max(e["step"] for e in trainer_state["log_history"]) == runs["step"]


def test_the_resume_continues_on_the_same_weights_and_data_order(runs):
    real, rebuilt = losses_by_step(runs["boxed"]), losses_by_step(runs["rebuilt"])
    assert sorted(rebuilt) == sorted(real) == list(range(1, 16))
    for step in range(1, runs["step"] + 1):  # the history carried over
        assert rebuilt[step] == pytest.approx(real[step], rel=1e-6), step
    # The first step after the resume: the same batch on the same weights, so the same loss.
    following = runs["step"] + 1
    assert rebuilt[following] == pytest.approx(real[following], rel=1e-4, abs=1e-6)
    final = json.loads((runs["rebuilt"] / "metrics.json").read_text())["training"]
    assert final["complete"] is True and final["global_step"] == 15


def test_the_ledger_records_the_rebuild(runs):
    sessions = json.loads((runs["rebuilt"] / SESSIONS_FILE).read_text())
    assert [s["to_step"] for s in sessions] == [runs["step"], runs["step"], 15]
    assert "rebuilt" in sessions[1]["stop_reason"] and sessions[1]["resumed_from"] == str(runs["source"])


def test_an_existing_checkpoint_is_never_replaced(runs, capsys):
    code = recover_main(["--config", str(runs["config"].source), "--from", str(runs["source"])])
    assert code == 2
    assert "exists: resume from it" in capsys.readouterr().err


def test_a_directory_without_a_ledger_is_named(runs, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(Path(runs["config"].source).read_text().replace(str(runs["rebuilt"]), str(tmp_path / "out")))
    code = recover_main(["--config", str(config), "--from", str(tmp_path)])
    assert code == 2
    assert f"{tmp_path / SESSIONS_FILE}: cannot read the training ledger" in capsys.readouterr().err
