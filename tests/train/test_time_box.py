"""Time box and resume: a run stopped by the time box and resumed ends where an uninterrupted run ends."""

import json
from itertools import count

import pytest
from helpers import make_tiny_model
from test_pipeline import write_config

from qa.model_dir import SESSIONS_FILE
from train.config import load_config
from train.train import run
from train.trainer import TimeBox

pytestmark = pytest.mark.slow


def losses_by_step(model_dir):
    log = json.loads((model_dir / "training_log.json").read_text())
    return {entry["step"]: entry["loss"] for entry in log if "loss" in entry}


def weights(model_dir):
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fixtures_dir):
    root = tmp_path_factory.mktemp("timebox")
    base = make_tiny_model(root / "base", "bert")
    # 17 one-window questions, batch 4 -> 5 steps an epoch, 3 epochs; dropout and length grouping on,
    # so the RNG state and the data order both have to survive the stop.
    options = dict(num_train_epochs=3, per_device_train_batch_size=4, logging_steps=1, eval_each_epoch=False,
                   group_by_length=True, save_total_limit=3)
    # Both runs must reduce in the same thread layout: the evaluation at the end of a run (and
    # other tests' engines) set torch's global thread count, and Adam amplifies the float noise a
    # different count gives (measured: 6e-4 in a LayerNorm bias).
    import torch

    torch.set_num_threads(1)
    straight = root / "straight"
    run(load_config(write_config(root / "a.yaml", base, straight, fixtures_dir, **options)))
    torch.set_num_threads(1)
    boxed = root / "boxed"
    config = load_config(write_config(root / "b.yaml", base, boxed, fixtures_dir, max_train_minutes=7.5, **options))
    ticks = count()
    mp = pytest.MonkeyPatch()
    mp.setattr(TimeBox, "clock", staticmethod(lambda: 60.0 * next(ticks)))  # one minute per look at the clock
    try:
        run(config)
        interim = json.loads((boxed / "metrics.json").read_text())
        interim_losses = losses_by_step(boxed)
    finally:
        mp.undo()
    torch.set_num_threads(1)
    run(config, resume=True)
    return {"straight": straight, "boxed": boxed, "interim": interim, "interim_losses": interim_losses}


def test_the_time_box_stops_early_with_an_interim_model(runs):
    training = runs["interim"]["training"]
    assert training["complete"] is False
    assert 0 < training["global_step"] < training["max_steps"] == 15
    assert "f1" in runs["interim"]  # the interim directory is evaluated like a final one
    assert (runs["boxed"] / f"checkpoint-{training['global_step']}" / "optimizer.pt").is_file()
    # The stop step is logged, so the curve has no gap.
    assert max(runs["interim_losses"]) == training["global_step"]


def test_resumed_run_matches_the_uninterrupted_run(runs):
    straight, resumed = losses_by_step(runs["straight"]), losses_by_step(runs["boxed"])
    assert sorted(straight) == sorted(resumed) == list(range(1, 16))
    for step in straight:
        assert resumed[step] == pytest.approx(straight[step], rel=1e-4, abs=1e-6), step
    a, b = weights(runs["straight"]), weights(runs["boxed"])
    for name in a:
        assert abs(a[name] - b[name]).max() < 1e-4, name


def test_sessions_are_recorded(runs):
    sessions = json.loads((runs["boxed"] / SESSIONS_FILE).read_text())
    assert [s["stopped_by_time_box"] for s in sessions] == [True, False]
    assert sessions[0]["to_step"] == sessions[1]["from_step"] == runs["interim"]["training"]["global_step"]
    final = json.loads((runs["boxed"] / "metrics.json").read_text())["training"]
    assert final["complete"] is True and final["sessions"] == 2 and final["resumes"] == 1
