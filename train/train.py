"""Fine-tune a QA model on SQuAD v1.1 with the Hugging Face Trainer.

    python -m train.train --config configs/smoke.yaml [--resume]
    torchrun --nproc_per_node 2 -m train.train --config ...    # DDP, unchanged

Writes one model directory (training.output_dir): safetensors weights, tokenizer, config,
qa.json, metrics.json and predictions.json (final evaluation through the serving engine),
train_config.yaml, training_log.json, training_curve.png and a model card (README.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from train.config import ConfigError, ExperimentConfig, load_config
from train.data import SquadFormatError, file_sha256, load_split
from train.model_source import ModelSourceError

logger = logging.getLogger("train")


def inference_params(config: ExperimentConfig):
    from serve.engine import InferenceParams

    p = config.preprocessing
    return InferenceParams(p.max_seq_length, p.doc_stride, p.max_query_length, p.n_best, p.max_answer_length)


def load_base(config: ExperimentConfig):
    """(tokenizer, windower, model) for the configured base model."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from serve.windowing import Windower
    from train.model_source import resolve_model_source

    source = resolve_model_source(config.model.name_or_path, config.model.expected_sha256)
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    p = config.preprocessing
    windower = Windower(tokenizer.backend_tokenizer, p.max_seq_length, p.doc_stride, p.max_query_length)
    model = AutoModelForQuestionAnswering.from_pretrained(source)
    return tokenizer, windower, model


def load_data(config: ExperimentConfig):
    d = config.data
    train_examples = load_split(d.train_file, d.dataset_name, "train", d.max_train_examples)
    eval_examples = load_split(d.validation_file, d.dataset_name, "validation", d.max_eval_examples)
    return train_examples, eval_examples


def build_trainer(config: ExperimentConfig, model=None, model_init=None, tokenizer=None, windower=None,
                  train_examples=None, eval_examples=None, **argument_overrides):
    """A SquadTrainer over windowed training features; returns (trainer, feature stats)."""
    import datasets

    from serve.backends import TorchBackend
    from train.features import PaddingCollator, build_train_features
    from train.trainer import SquadTrainer, training_arguments

    input_names = TorchBackend.from_model(model or model_init()).input_names
    columns, stats = build_train_features(windower, train_examples, input_names)
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
        params=inference_params(config),
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


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def run(config: ExperimentConfig, resume: bool = False) -> Path:
    import torch
    import yaml
    from transformers import set_seed

    from train.card import write_model_card, write_training_curve
    from train.evaluate import evaluate_model, write_json

    set_seed(config.training.seed)
    out = Path(config.training.output_dir)
    tokenizer, windower, model = load_base(config)
    train_examples, eval_examples = load_data(config)
    trainer, stats = build_trainer(config, model=model, tokenizer=tokenizer, windower=windower,
                                   train_examples=train_examples, eval_examples=eval_examples)
    checkpoint = None
    if resume:
        checkpoint = last_complete_checkpoint(out)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint-* directory in {out}")
        logger.info("resuming from %s", checkpoint)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return out

    # Graphs and gate results of an earlier run in this directory describe other weights.
    shutil.rmtree(out / "onnx", ignore_errors=True)
    (out / "gate.json").unlink(missing_ok=True)
    inference_params(config).save(out)
    (out / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    write_json(out / "training_log.json", trainer.state.log_history)
    write_training_curve(trainer.state.log_history, out / "training_curve.png")
    # The final numbers come from the saved directory, loaded exactly as the server loads it.
    if config.data.validation_file:
        predictions, metrics = evaluate_model(out, config.data.validation_file, "torch", config.data.max_eval_examples)
    else:  # Hub validation split (online users): same engine, no file checksum
        from serve.engine import QAEngine
        from train.evaluate import score_examples

        predictions, metrics = score_examples(QAEngine.from_model_dir(out, backend="torch"), eval_examples, True)
        metrics.update({"model_dir": str(out), "backend": "torch", "data_file": config.data.dataset_name,
                        "data_sha256": None, "limit": config.data.max_eval_examples,
                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    write_json(out / "predictions.json", predictions)
    training = {
        "train_runtime_s": round(train_seconds, 1),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_examples": len(train_examples),
        "train_windows": stats.windows,
        "windows_without_answer": stats.windows_without_answer,
        "examples_without_answer": stats.examples_without_answer,
        "hardware": hardware(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "train_file": config.data.train_file,
        "train_sha256": file_sha256(config.data.train_file) if config.data.train_file else None,
        "resumed_from": checkpoint,
    }
    metrics["training"] = training
    write_json(out / "metrics.json", metrics)
    write_model_card(out, config, metrics)
    logger.info("model written to %s: EM %.2f F1 %.2f", out, metrics.get("exact_match", 0), metrics.get("f1", 0))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        run(config, resume=args.resume)
    except (ConfigError, SquadFormatError, ModelSourceError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
