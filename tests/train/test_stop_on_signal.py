"""SIGTERM or Ctrl-C during training asks the time box for a clean stop: checkpoint, log, interim model."""

import os
import signal
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from train.trainer import TimeBox


def step_end(box: TimeBox, global_step: int = 3, max_steps: int = 10) -> TrainerControl:
    state = SimpleNamespace(global_step=global_step, max_steps=max_steps)
    return box.on_step_end(SimpleNamespace(device="cpu"), state, TrainerControl())


def test_a_signal_stops_after_the_step_with_a_checkpoint():
    box = TimeBox(max_minutes=None, save_every_minutes=None)
    box.on_train_begin(None, None, None)
    control = step_end(box)
    assert not control.should_training_stop and not control.should_save
    with box.stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        control = step_end(box)
    assert control.should_training_stop and control.should_save and control.should_log
    assert box.stopped and box.stop_reason == "signal"


def test_the_time_box_names_its_own_reason():
    box = TimeBox(max_minutes=1, save_every_minutes=None)
    ticks = iter([0.0, 61.0])
    box.clock = lambda: next(ticks)
    box.on_train_begin(None, None, None)
    assert step_end(box).should_training_stop and box.stop_reason == "time box"


def test_a_later_second_signal_stops_at_once_and_the_handlers_are_restored(monkeypatch):
    box = TimeBox(max_minutes=None, save_every_minutes=None)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    now = iter([100.0, 100.5, 104.0])
    monkeypatch.setattr("train.trainer.time.monotonic", lambda: next(now))
    with pytest.raises(KeyboardInterrupt), box.stop_on_signals():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # 0.5 s later: the same Ctrl-C forwarded, still a clean stop
        assert box.stop_requested
        os.kill(os.getpid(), signal.SIGTERM)  # 4 s after the first: out now
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_signal_on_the_last_step_changes_nothing():
    box = TimeBox(max_minutes=None, save_every_minutes=None)
    box.on_train_begin(None, None, None)
    box.request_stop()
    assert not step_end(box, global_step=10, max_steps=10).should_training_stop and not box.stopped
