"""Rebuild a resumable checkpoint from a model directory when a run's own checkpoint is lost.

    python -m train.recover --config configs/minilm-squad.yaml --from models/minilm-l6-squad
    make train CONFIG=configs/minilm-squad.yaml RESUME=1      # then continues from it

A packaged interim model holds the weights at step N (the last entry of its sessions.json) but no
optimizer state. This writes training.output_dir/checkpoint-N in the Trainer's own format: the
weights in float32, the learning-rate schedule at step N, the loss history so far, and Adam's
moments re-estimated on the `prime_batches` batches that precede step N in the run's data order.
Those are optimizer steps at learning rate 0, so the weights do not move; without them the first
updates after the resume would be Adam's full-size bias-corrected first steps at mid-run learning
rate. The result is close to the lost checkpoint, not equal to it (the weights went through
float16, the moments are estimates), and the ledger (sessions.json) says so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from qa.model_dir import SESSIONS_FILE, TRAINING_LOG_FILE, WEIGHTS_FILE
from train.cli import positive_int, run_stage
from train.config import ConfigError, ExperimentConfig, load_config
from train.data import SquadFormatError
from train.hardware import training_hardware
from train.model_source import ModelSourceError

logger = logging.getLogger("train.recover")


def _read_ledger(source: Path) -> list[dict]:
    path = source / SESSIONS_FILE
    try:
        sessions = json.loads(path.read_text())
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read the training ledger ({exc.strerror})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not sessions or not isinstance(sessions[-1].get("to_step"), int) or sessions[-1]["to_step"] < 1:
        raise ValueError(f"{path}: the last session has no positive 'to_step'")
    return sessions


def rebuild_checkpoint(config: ExperimentConfig, source: Path, prime_batches: int = 20) -> Path:
    """Write output_dir/checkpoint-N from the weights in `source`; returns the checkpoint path."""
    import torch
    from safetensors.torch import load_file
    from transformers import set_seed
    from transformers.trainer_callback import ExportableState, TrainerState

    from train.train import build_trainer, last_complete_checkpoint, load_base, load_data

    source = Path(source)
    sessions = _read_ledger(source)
    step, max_steps_then = sessions[-1]["to_step"], sessions[-1].get("max_steps")
    out = Path(config.training.output_dir)
    existing = last_complete_checkpoint(out)
    if existing:
        raise FileExistsError(f"{existing} exists: resume from it (make train RESUME=1) instead of rebuilding")

    set_seed(config.training.seed)
    tokenizer, windower, model = load_base(config)
    try:
        stored = load_file(str(source / WEIGHTS_FILE))
    except OSError as exc:
        raise FileNotFoundError(f"{source / WEIGHTS_FILE}: cannot read the weights ({exc})") from None
    # strict: every weight of the architecture must come from the model directory.
    model.load_state_dict({name: tensor.float() for name, tensor in stored.items()}, strict=True)
    data = load_data(config)
    trainer, _ = build_trainer(config, model=model, tokenizer=tokenizer, windower=windower,
                               train_examples=data.train, eval_examples=data.evaluation)
    args = trainer.args
    dataloader = trainer.get_train_dataloader()
    steps_per_epoch = max(len(dataloader) // args.gradient_accumulation_steps, 1)
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    if max_steps_then is not None and max_steps != max_steps_then:
        raise ValueError(f"{source / SESSIONS_FILE}: max_steps is {max_steps_then}, but {config.source} gives "
                         f"{max_steps}; the data order would not be the run's")
    if step >= max_steps:
        raise ValueError(f"{source / SESSIONS_FILE}: to_step {step} is already the end of training ({max_steps})")

    trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
    optimizer = trainer.optimizer
    started = time.perf_counter()
    # The batches just before step N, in the order of the epoch they belong to.
    epoch = (step - 1) // steps_per_epoch
    position = step - epoch * steps_per_epoch
    primed = min(prime_batches, position)
    micro = args.gradient_accumulation_steps
    if hasattr(dataloader, "set_epoch"):
        dataloader.set_epoch(epoch)
    first = (position - primed) * micro
    batches = itertools.islice(iter(dataloader), first, first + primed * micro)
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # AdamW at lr 0 updates its moments and step count; weights and decay stay put
    for index, batch in enumerate(batches):
        loss = model(**batch).loss / micro
        loss.backward()
        if (index + 1) % micro == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)  # as the Trainer does
            optimizer.step()
            optimizer.zero_grad()
    for _ in range(step):  # the schedule's learning rate at step N
        trainer.lr_scheduler.step()
    logger.info("Adam moments re-estimated on %d batches before step %d in %.0f s; learning rate now %.3g",
                primed, step, time.perf_counter() - started, trainer.lr_scheduler.get_last_lr()[0])

    trainer.state = TrainerState(stateful_callbacks=[
        cb for cb in trainer.callback_handler.callbacks + [trainer.control] if isinstance(cb, ExportableState)])
    trainer.state.train_batch_size = trainer._train_batch_size
    trainer.state.compute_steps(args, max_steps)
    trainer.state.max_steps = max_steps
    trainer.state.num_train_epochs = math.ceil(max_steps / steps_per_epoch)
    trainer.state.global_step = step
    trainer.state.epoch = step / steps_per_epoch
    log_path = source / TRAINING_LOG_FILE
    history = json.loads(log_path.read_text()) if log_path.is_file() else []
    trainer.state.log_history = [entry for entry in history if entry.get("step", 0) <= step]
    trainer._save_checkpoint(trainer.model, trial=None)  # the Trainer's own checkpoint layout
    checkpoint = out / f"checkpoint-{step}"

    sessions.append({
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "train_seconds": 0.0,
        "from_step": step, "to_step": step, "max_steps": max_steps, "resumed_from": str(source),
        "stopped_by_time_box": False,
        "stop_reason": f"checkpoint rebuilt from {source} (float16 weights; Adam moments from {primed} batches)",
        "hardware": training_hardware(), "windows_per_second": None,
    })
    (out / SESSIONS_FILE).write_text(json.dumps(sessions, indent=2) + "\n")
    print(f"wrote {checkpoint} (step {step} of {max_steps}); continue with: "
          f"make train CONFIG={config.source} RESUME=1", flush=True)
    return checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--from", dest="source", required=True, type=Path,
                        help="model directory with model.safetensors, sessions.json and training_log.json")
    parser.add_argument("--prime-batches", type=positive_int, default=20,
                        help="batches before step N that re-estimate Adam's moments (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stage(lambda: rebuild_checkpoint(load_config(args.config), args.source, args.prime_batches),
                     (ConfigError, SquadFormatError, ModelSourceError, FileNotFoundError, FileExistsError,
                      ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
