"""Fine-tune a QA model on SQuAD v1.1 with the Hugging Face Trainer.

    python -m train.train --config configs/smoke.yaml [--resume]
    torchrun --nproc_per_node 2 -m train.train --config ...    # DDP, unchanged

Writes one model directory (training.output_dir): safetensors weights, tokenizer, config,
qa.json, metrics.json and predictions.json (final evaluation through the serving engine),
train_config.yaml, training_log.json, training_curve.png and a model card (README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qa.files import file_sha256, write_json
from qa.model_dir import (
    CALIBRATION_FILE,
    GATE_RECORD,
    HELDOUT_FILE,
    METRICS_FILE,
    ONNX_DIR,
    PREDICTIONS_FILE,
    SESSIONS_FILE,
    TRAIN_CONFIG_FILE,
    TRAINING_CURVE_FILE,
    TRAINING_LOG_FILE,
    save_params,
)
from train.cli import run_stage
from train.config import ConfigError, ExperimentConfig, load_config
from train.data import SquadFormatError, hold_out_titles, load_split, pair_unanswerable, split_heldout_articles
from train.hard_examples import DISTRACTOR_SUFFIX
from train.hardware import training_hardware
from train.model_source import ModelSourceError
from train.tracking import TrackingError, check_store, log_result, tracking_enabled, training_run

logger = logging.getLogger("train")


def load_base(config: ExperimentConfig):
    """(tokenizer, windower, model) for the configured base model."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.windowing import Windower
    from train.model_source import resolve_model_source

    source = resolve_model_source(config.model.name_or_path, config.model.expected_sha256)
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    windower = Windower.from_params(tokenizer.backend_tokenizer, config.preprocessing)
    # fp32 master weights whatever the source stores: a shipped model's weights are fp16.
    model = AutoModelForQuestionAnswering.from_pretrained(source, dtype=torch.float32,
                                                          **dropout_overrides(source, config.model.dropout))
    return tokenizer, windower, model


# Dropout probabilities by their config names: BERT-style, then DistilBERT-style (with its QA head).
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                  "dropout", "attention_dropout", "qa_dropout")


def dropout_overrides(source: str, dropout: float | None) -> dict:
    """from_pretrained keyword arguments that set every dropout of the model's config to `dropout`."""
    if dropout is None:
        return {}
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(source)
    return {name: dropout for name in DROPOUT_FIELDS if hasattr(model_config, name)}


@dataclass
class TrainData:
    train: list  # what the model trains on: kept questions (some with a distractor) plus synthetic unanswerable ones
    evaluation: list
    heldout_titles: list[str] = field(default_factory=list)
    heldout_questions: int = 0
    unanswerable_pairs: int = 0
    unanswerable_without_partner: int = 0
    answer_removed: int = 0
    answer_removed_skipped: int = 0
    distractors: int = 0
    distractors_skipped: int = 0
    entity_swapped: int = 0
    entity_swapped_skipped: int = 0
    replayed: int = 0


def load_data(config: ExperimentConfig) -> TrainData:
    """Train and eval examples. Held out: the articles named by data.heldout_articles_file, else a
    seeded share. The rest gain synthetic unanswerable twins (another paragraph; their own paragraph
    less the answer's sentences; the question with a name or number swapped) and a seeded share get a
    distracting sentence (train/hard_examples.py)."""
    from train.hard_examples import answer_removed_twins, entity_swapped_twins, with_distractors

    d, seed = config.data, config.training.seed
    train_examples = load_split(d.train_file, d.dataset_name, "train", d.max_train_examples)
    eval_examples = load_split(d.validation_file, d.dataset_name, "validation", d.max_eval_examples)
    if d.heldout_articles_file:
        titles = read_heldout_titles(d.heldout_articles_file)
        kept, heldout, titles = hold_out_titles(train_examples, titles)
    else:
        kept, heldout, titles = split_heldout_articles(train_examples, d.heldout_article_fraction, seed)
    replayed = replay_sample(d.replay_file, titles, round(d.replay_fraction * len(kept)), seed) if d.replay_file else []
    unanswerable, without_partner = pair_unanswerable(kept, d.unanswerable_fraction, seed)
    removed = answer_removed_twins(kept, d.answer_removed_fraction, seed + 1)
    distracted = with_distractors(kept, d.distractor_fraction, seed + 2)
    swapped = entity_swapped_twins(kept, d.entity_swapped_fraction, seed + 3)
    if distracted.examples:
        replaced = {e.id.removesuffix(DISTRACTOR_SUFFIX): e for e in distracted.examples}
        kept = [replaced.get(e.id, e) for e in kept]
    if titles:
        logger.info("held out %d train articles (%d questions) for calibration", len(titles), len(heldout))
    if d.unanswerable_fraction:
        logger.info("synthetic unanswerable questions: %d (%d drawn had no answer-free paragraph in their article)",
                    len(unanswerable), without_partner)
    if d.answer_removed_fraction:
        logger.info("answer-removed questions: %d (%d drawn kept an answer or nothing)",
                    len(removed.examples), removed.skipped)
    if d.distractor_fraction:
        logger.info("questions with a distracting sentence: %d (%d drawn had no candidate sentence)",
                    len(distracted.examples), distracted.skipped)
    if d.entity_swapped_fraction:
        logger.info("entity-swapped questions: %d (%d drawn had no name or number to swap)",
                    len(swapped.examples), swapped.skipped)
    if replayed:
        logger.info("replayed %d questions of %s beside %d of the domain", len(replayed), d.replay_file, len(kept))
    return TrainData(
        train=kept + unanswerable + removed.examples + swapped.examples + replayed, evaluation=eval_examples,
        heldout_titles=titles, heldout_questions=len(heldout),
        unanswerable_pairs=len(unanswerable), unanswerable_without_partner=without_partner,
        answer_removed=len(removed.examples), answer_removed_skipped=removed.skipped,
        distractors=len(distracted.examples), distractors_skipped=distracted.skipped,
        entity_swapped=len(swapped.examples), entity_swapped_skipped=swapped.skipped,
        replayed=len(replayed))


def replay_sample(replay_file: str, heldout_titles: list[str], count: int, seed: int) -> list:
    """A seeded sample of `count` questions of replay_file, none from the held-out articles."""
    import random

    pool = [e for e in load_split(replay_file, None, "train", None) if e.title not in set(heldout_titles)]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def read_heldout_titles(path: str) -> list[str]:
    """The titles of a heldout_articles.json, with an error naming the file and the field."""
    try:
        titles = json.loads(Path(path).read_text(encoding="utf-8"))["titles"]
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(path, "titles", "must be a JSON object with a 'titles' list") from None
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) for t in titles):
        raise ConfigError(path, "titles", f"must be a non-empty list of article titles, got {titles!r}")
    return titles


def build_trainer(config: ExperimentConfig, model=None, model_init=None, tokenizer=None, windower=None,
                  train_examples=None, eval_examples=None, **argument_overrides):
    """A SquadTrainer over windowed training features; returns (trainer, feature stats)."""
    import datasets

    from qa.backends import TorchBackend
    from train.features import PaddingCollator, build_train_features
    from train.trainer import SquadTrainer, training_arguments

    input_names = TorchBackend.from_model(model or model_init()).input_names
    columns, stats = build_train_features(windower, train_examples, input_names)
    columns["length"] = [len(ids) for ids in columns["input_ids"]]  # for length-grouped sampling
    logger.info("training features: %s", stats.summary())
    trainer = SquadTrainer(
        model=model,
        model_init=model_init,
        args=training_arguments(config, **argument_overrides),
        train_dataset=datasets.Dataset.from_dict(columns),
        eval_dataset=datasets.Dataset.from_list([e.as_record() for e in eval_examples]),
        data_collator=PaddingCollator(windower.pad_id, input_names),
        processing_class=tokenizer,
        eval_examples=eval_examples,
        windower=windower,
        params=config.preprocessing,
    )
    return trainer, stats


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint-N that was written to the end (a run killed while saving leaves a partial one)."""
    complete = []
    for path in output_dir.glob("checkpoint-*") if output_dir.is_dir() else []:
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            complete.append((int(step), path))
    return str(max(complete)[1]) if complete else None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resume_command(config: ExperimentConfig, max_minutes: float | None) -> str:
    command = f"make train CONFIG={config.source} RESUME=1"
    return command + (f" MAX_MINUTES={max_minutes:g}" if max_minutes else "")


def record_session(out: Path, entry: dict) -> list[dict]:
    """Append this session to output_dir/sessions.json (one entry per start or resume) and return them all."""
    path = out / SESSIONS_FILE
    sessions = json.loads(path.read_text()) if path.is_file() else []
    sessions.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sessions, indent=2) + "\n")
    return sessions


def run(config: ExperimentConfig, resume: bool = False, max_minutes: float | None = None) -> Path:
    """Train, save, evaluate and document one model directory; returns it.

    With a time box (`max_minutes`, else training.max_train_minutes) training may stop early with a
    full checkpoint; the directory is then an interim model (metrics.json training.complete = false)
    and the resume command is printed.
    """
    import torch
    import yaml
    from transformers import set_seed

    from train.card import write_model_card, write_training_curve
    from train.evaluate import evaluate_model
    from train.trainer import TimeBox

    set_seed(config.training.seed)
    out = Path(config.training.output_dir)
    max_minutes = max_minutes or config.training.max_train_minutes
    if int(os.environ.get("RANK", "0")) == 0:  # the process that will own the MLflow run
        check_store()
    tokenizer, windower, model = load_base(config)
    data = load_data(config)
    trainer, stats = build_trainer(config, model=model, tokenizer=tokenizer, windower=windower,
                                   train_examples=data.train, eval_examples=data.evaluation)
    time_box = TimeBox(max_minutes, config.training.save_every_minutes)
    trainer.add_callback(time_box)
    checkpoint = None
    if resume:
        checkpoint = last_complete_checkpoint(out)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint-* directory in {out}")
        logger.info("resuming from %s", checkpoint)
    else:
        (out / SESSIONS_FILE).unlink(missing_ok=True)  # a fresh run starts a fresh ledger
    start_step = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.perf_counter()
    # The MLflow run spans training and the final evaluation; a resume reopens it (train/tracking.py).
    tags = {"mlflow.source.git.commit": git_commit(), "config": config.source}
    with training_run(config, out, resume, tags, active=trainer.is_world_process_zero()):
        with time_box.stop_on_signals():
            trainer.train(resume_from_checkpoint=checkpoint)
        train_seconds = time.perf_counter() - started
        trainer.save_model(str(out))
        if not trainer.is_world_process_zero():
            return out

        args = trainer.args
        windows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        end_step = trainer.state.global_step
        sessions = record_session(out, {
            "started": started_at, "train_seconds": round(train_seconds, 1), "from_step": start_step,
            "to_step": end_step, "max_steps": trainer.state.max_steps, "resumed_from": checkpoint,
            "stopped_by_time_box": time_box.stop_reason == "time box",
            "stop_reason": time_box.stop_reason if time_box.stopped else None,
            "hardware": training_hardware(),
            "windows_per_second": round((end_step - start_step) * windows_per_step / max(train_seconds, 1e-9), 2),
        })
        # Graphs and gate results of an earlier run in this directory describe other weights.
        shutil.rmtree(out / ONNX_DIR, ignore_errors=True)
        (out / GATE_RECORD).unlink(missing_ok=True)
        (out / CALIBRATION_FILE).unlink(missing_ok=True)
        save_params(out, config.preprocessing)
        (out / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        write_json(out / TRAINING_LOG_FILE, trainer.state.log_history)
        write_training_curve(trainer.state.log_history, out / TRAINING_CURVE_FILE)
        if data.heldout_titles:
            write_json(out / HELDOUT_FILE, {"seed": config.training.seed,
                                            "fraction": config.data.heldout_article_fraction,
                                            "from_file": config.data.heldout_articles_file,
                                            "questions": data.heldout_questions, "titles": data.heldout_titles})
        # The final numbers come from the saved directory, loaded exactly as the server loads it.
        if config.data.validation_file:
            predictions, metrics = evaluate_model(out, config.data.validation_file, "torch",
                                                  config.data.max_eval_examples)
        else:  # Hub validation split (online users): same engine, no file checksum
            from qa.engine import QAEngine
            from train.evaluate import score_examples

            predictions, metrics = score_examples(QAEngine.from_model_dir(out, backend="torch"), data.evaluation, True)
            metrics.update({"model_dir": str(out), "backend": "torch", "data_file": config.data.dataset_name,
                            "data_sha256": None, "limit": config.data.max_eval_examples,
                            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        write_json(out / PREDICTIONS_FILE, predictions)
        total_seconds = sum(s["train_seconds"] for s in sessions)
        total_windows = sum((s["to_step"] - s["from_step"]) for s in sessions) * windows_per_step
        training = {
            "complete": end_step >= trainer.state.max_steps,
            "global_step": end_step,
            "max_steps": trainer.state.max_steps,
            "epochs_done": round(trainer.state.epoch or 0, 4),
            "train_runtime_s": round(total_seconds, 1),
            "train_hours": round(total_seconds / 3600, 2),
            "train_samples_per_second": round(total_windows / max(total_seconds, 1e-9), 2),
            "sessions": len(sessions),
            "resumes": sum(1 for s in sessions if s["resumed_from"]),
            "train_examples": len(data.train),
            "train_windows": stats.windows,
            "windows_without_answer": stats.windows_without_answer,
            "examples_without_answer": stats.examples_without_answer,
            "unanswerable_examples": stats.unanswerable_examples,
            "unanswerable_windows": stats.unanswerable_windows,
            "unanswerable_without_partner": data.unanswerable_without_partner,
            "answer_removed_examples": data.answer_removed,
            "answer_removed_skipped": data.answer_removed_skipped,
            "distractor_examples": data.distractors,
            "distractor_skipped": data.distractors_skipped,
            "entity_swapped_examples": data.entity_swapped,
            "entity_swapped_skipped": data.entity_swapped_skipped,
            "replayed_examples": data.replayed,
            "cpu_bf16": bool(trainer.args.bf16 and not torch.cuda.is_available()),
            "heldout_articles": len(data.heldout_titles),
            "heldout_questions": data.heldout_questions,
            "hardware": training_hardware(),
            "torch": torch.__version__,
            "git_commit": git_commit(),
            "config": config.source,
            "train_file": config.data.train_file,
            "train_sha256": file_sha256(config.data.train_file) if config.data.train_file else None,
            "resumed_from": checkpoint,
        }
        metrics["training"] = training
        write_json(out / METRICS_FILE, metrics)
        write_model_card(out, config, metrics)
        if tracking_enabled():
            log_result(out, metrics)
        logger.info("model written to %s: EM %.2f F1 %.2f", out, metrics.get("exact_match", 0), metrics.get("f1", 0))
        if not training["complete"]:
            reason = "stopped on a signal" if time_box.stop_reason == "signal" else "time box reached"
            print(f"{reason} after {train_seconds / 60:.1f} min at step {end_step}/{trainer.state.max_steps} "
                  f"(epoch {training['epochs_done']:.3f}); checkpoint {last_complete_checkpoint(out)}; "
                  f"{out} holds an interim model.\nresume with: {resume_command(config, max_minutes)}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time box: stop with a full checkpoint after this many minutes of training")
    args = parser.parse_args(argv)
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error(f"--max-minutes must be positive, got {args.max_minutes:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stage(lambda: run(load_config(args.config), resume=args.resume, max_minutes=args.max_minutes),
                     (ConfigError, SquadFormatError, ModelSourceError, FileNotFoundError, TrackingError))


if __name__ == "__main__":
    sys.exit(main())
