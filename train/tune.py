"""Small hyperparameter search: Trainer.hyperparameter_search with Optuna on a data subset.

    python -m train.tune --config configs/smoke.yaml [--n-trials N]

Maximises dev-subset F1 (through the serving engine) over the config's `tune` search space and
writes the best parameters to tune.output_file (default: <training.output_dir>/best_params.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from train.cli import run_stage
from train.config import ConfigError, ExperimentConfig, load_config
from train.data import SquadFormatError
from train.model_source import ModelSourceError


def search_space(config: ExperimentConfig):
    tune = config.tune

    def space(trial) -> dict:
        return {
            "learning_rate": trial.suggest_float("learning_rate", *tune.learning_rate, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", *tune.num_train_epochs),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", tune.per_device_train_batch_size),
            # transformers 5 reads a float in [0, 1) in warmup_steps as a ratio.
            "warmup_steps": trial.suggest_float("warmup_steps", *tune.warmup_ratio),
        }

    return space


def run(config: ExperimentConfig, n_trials: int | None = None) -> dict:
    import optuna
    from transformers import AutoModelForQuestionAnswering

    from train.model_source import resolve_model_source
    from train.train import build_trainer, dropout_overrides, load_base, load_data

    tune = config.tune
    config = replace(
        config,
        data=replace(config.data, max_train_examples=tune.max_train_examples, max_eval_examples=tune.max_eval_examples),
        training=replace(config.training, output_dir=str(Path(config.training.output_dir) / "tune"),
                         save_total_limit=1),
    )
    tokenizer, windower, _ = load_base(config)
    source = resolve_model_source(config.model.name_or_path)
    data = load_data(config)

    def model_init(trial=None):
        return AutoModelForQuestionAnswering.from_pretrained(source, **dropout_overrides(source, config.model.dropout))

    trainer, _ = build_trainer(config, model_init=model_init, tokenizer=tokenizer, windower=windower,
                               train_examples=data.train, eval_examples=data.evaluation, save_strategy="no",
                               report_to=[])
    best = trainer.hyperparameter_search(
        hp_space=search_space(config),
        compute_objective=lambda metrics: metrics["eval_f1"],
        n_trials=n_trials or tune.n_trials,
        direction="maximize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=config.training.seed),
    )
    result = {
        "best_f1": best.objective,
        "best_params": {("warmup_ratio" if k == "warmup_steps" else k): v for k, v in best.hyperparameters.items()},
        "n_trials": n_trials or tune.n_trials,
        "train_examples": len(data.train),
        "eval_examples": len(data.evaluation),
        "config": config.source,
    }
    output = Path(tune.output_file or Path(config.training.output_dir).parent / "best_params.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"best parameters written to {output}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--n-trials", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stage(lambda: run(load_config(args.config), args.n_trials),
                     (ConfigError, SquadFormatError, ModelSourceError))


if __name__ == "__main__":
    sys.exit(main())
