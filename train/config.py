"""Validated YAML configs: one dataclass per section, every key checked.

An unknown or mistyped key, a wrong type or an out-of-range value is a `ConfigError` that
names the file and the dotted field, e.g. `configs/x.yaml: training.learnin_rate: unknown key
(did you mean 'learning_rate'?)`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from qa.model_dir import METRICS_FILE, TRAIN_CONFIG_FILE
from qa.params import InferenceParams, InvalidParams

DEFAULT_SQUAD_DIR = "../shared/data/squad"
CHAMPION_RULES = ("not_worse", "better", "off")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    def __init__(self, source: str | Path, field_path: str, problem: str) -> None:
        self.source = str(source)
        self.field_path = field_path
        super().__init__(f"{source}: {field_path}: {problem}" if field_path else f"{source}: {problem}")


@dataclass
class ModelConfig:
    # A local directory, "pypi:<package>" for a model shipped in a Python package, or a Hub id (online only).
    name_or_path: str
    # sha256 of model.safetensors; checked before training when set.
    expected_sha256: str | None = None
    # Overrides every dropout probability of the base model (hidden and attention) when set. On a
    # CPU the dropout masks cost ~14 % of a MiniLM training step (measured: aten::bernoulli_).
    dropout: float | None = None

    def validate(self, source: str) -> None:
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(source, "model.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    # Local SQuAD v1.1 JSON files (plain or .gz); ${SQUAD_DIR} defaults to ../shared/data/squad.
    train_file: str | None = None
    validation_file: str | None = None
    # A Hub dataset id such as "rajpurkar/squad", used only when the files are not set (online users).
    dataset_name: str | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    # Seeded share of train *articles* kept out of training (for calibrating the no-answer threshold).
    heldout_article_fraction: float = 0.0
    # Seeded share of train questions also paired with another paragraph of their article that holds
    # none of their answers; those windows are labelled [CLS] (synthetic unanswerable questions).
    unanswerable_fraction: float = 0.0
    # A model's heldout_articles.json: exactly its titles stay out (a run continuing from that model
    # holds out the same articles). Replaces heldout_article_fraction when set.
    heldout_articles_file: str | None = None
    # Seeded share of train questions also paired with their own paragraph less the sentences holding
    # their answers, labelled [CLS] (on-topic unanswerable; train/hard_examples.py).
    answer_removed_fraction: float = 0.0
    # Seeded share of train questions whose paragraph gets a distracting sentence from another
    # paragraph of the article; these replace the originals (train/hard_examples.py).
    distractor_fraction: float = 0.0
    # Seeded share of train questions also asked with a name or number swapped for one of the
    # article's that their paragraph never mentions, labelled [CLS] (SQuAD 2.0's entity swap;
    # train/hard_examples.py).
    entity_swapped_fraction: float = 0.0
    # Domain adaptation (make adapt): SQuAD questions replayed beside the domain's, so the model does
    # not forget; replay_fraction SQuAD questions per domain question, a seeded sample of replay_file
    # less the held-out articles.
    replay_file: str | None = None
    replay_fraction: float = 0.0

    def validate(self, source: str) -> None:
        if not self.dataset_name and not (self.train_file and self.validation_file):
            raise ConfigError(source, "data", "set train_file and validation_file, or dataset_name")
        if self.replay_fraction < 0:
            raise ConfigError(source, "data.replay_fraction", f"must be 0 or more, got {self.replay_fraction}")
        if self.replay_fraction and not self.replay_file:
            raise ConfigError(source, "data.replay_file", "not set, but replay_fraction is")
        for name in ("heldout_article_fraction", "unanswerable_fraction", "answer_removed_fraction",
                     "distractor_fraction", "entity_swapped_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(source, f"data.{name}", f"must be in [0, 1), got {value}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(source, f"data.{name}", f"must be positive, got {value}")


@dataclass
class TrainingConfig:
    output_dir: str
    learning_rate: float = 5e-5
    num_train_epochs: float = 2.0
    max_steps: int = -1
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    seed: int = 42
    logging_steps: int = 50
    save_total_limit: int = 2
    dataloader_num_workers: int = 0
    # Epoch-end evaluation on the validation subset (SQuAD EM/F1 through the serving engine).
    eval_each_epoch: bool = True
    # Batches of windows of similar length (about half the padding of random batches).
    group_by_length: bool = False
    # Time box: at this many minutes of training, save a full checkpoint and stop (resume with --resume).
    max_train_minutes: float | None = None
    # Also save a full checkpoint every this many minutes of training, so a killed run loses little.
    save_every_minutes: float | None = None
    # bf16 autocast on a CPU with native bf16 (avx512_bf16 or AMX); ignored, with a warning, on any
    # other CPU. Weights and optimizer state stay fp32.
    cpu_bf16: bool = False

    def validate(self, source: str) -> None:
        if not 0 < self.learning_rate < 1:
            raise ConfigError(source, "training.learning_rate", f"must be in (0, 1), got {self.learning_rate}")
        if self.num_train_epochs <= 0 and self.max_steps <= 0:
            raise ConfigError(source, "training.num_train_epochs", "must be positive (or set max_steps)")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(source, "training.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_total_limit"):
            if getattr(self, name) <= 0:
                raise ConfigError(source, f"training.{name}", "must be positive")
        for name in ("max_train_minutes", "save_every_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(source, f"training.{name}", f"must be positive minutes, got {value}")


@dataclass
class GateConfig:
    """Minimum scores (0-100) a model must reach to pass `make gate`."""

    exact_match: float
    f1: float
    # The int8 model may trail the fp32 model by at most this much F1.
    max_int8_f1_drop: float = 0.5
    # Against the current champion, on the same questions (train/compare.py, paired bootstrap):
    # "not_worse" refuses a challenger whose 95 % interval of the F1 difference lies below 0;
    # "better" also refuses one whose interval does not lie above 0; "off" compares nothing.
    champion: str = "not_worse"
    # When set, the challenger's F1 may also fall at most this far below the champion's (points).
    max_f1_drop_vs_champion: float | None = None
    # When set, the share of held-out questions paired with another article's paragraph that the model
    # abstains on at its served threshold (MODEL/calibration.json, train.calibrate --parts served) must
    # reach this (percent): a better F1 does not buy answering from the wrong document.
    min_wrong_context_abstention_pct: float | None = None

    def validate(self, source: str) -> None:
        for name in ("exact_match", "f1"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ConfigError(source, f"gate.{name}", f"must be between 0 and 100, got {value}")
        if self.champion not in CHAMPION_RULES:
            raise ConfigError(source, "gate.champion", f"must be one of {', '.join(CHAMPION_RULES)}, got "
                              f"{self.champion!r}")
        floor = self.min_wrong_context_abstention_pct
        if floor is not None and not 0 <= floor <= 100:
            raise ConfigError(source, "gate.min_wrong_context_abstention_pct",
                              f"must be between 0 and 100 (percent), got {floor}")
        if self.max_f1_drop_vs_champion is not None and self.max_f1_drop_vs_champion < 0:
            raise ConfigError(source, "gate.max_f1_drop_vs_champion",
                              f"must be 0 or more F1 points, got {self.max_f1_drop_vs_champion}")


@dataclass
class TrackingConfig:
    """MLflow experiment tracking and the model registry (train/tracking.py). The store is
    MLFLOW_TRACKING_URI, else outputs/mlflow.db; DISABLE_MLFLOW_INTEGRATION=TRUE turns tracking off."""

    # The MLflow experiment that training runs are logged under.
    experiment: str = "squad-qa"
    # The registered model that `make gate` adds versions to; default: the gated directory's name.
    registered_model: str | None = None
    # The alias a passing gate moves to the gated version (registry stages are deprecated in MLflow).
    alias: str = "champion"

    def validate(self, source: str) -> None:
        for name in ("experiment", "registered_model", "alias"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ConfigError(source, f"tracking.{name}", "must not be empty")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", self.alias) or self.alias.lower() == "latest":
            raise ConfigError(source, "tracking.alias",
                              f"must be a name like 'champion' (not 'latest'), got {self.alias!r}")


@dataclass
class AdaptConfig:
    """The second verdict of `make adapt`: the adapted model on SQuAD dev against the champion."""

    squad_validation_file: str = "${SQUAD_DIR}/dev-v1.1.json.gz"
    # SQuAD dev F1 may fall at most this far below the champion's (points).
    max_squad_f1_drop: float = 1.0
    # The backend both verdicts are measured on (the champion's too).
    backend: str = "torch"
    # Weight-space ensembling (WiSE-FT): after training, this share of each weight is the champion's,
    # the rest the adapted model's. It keeps much of the domain's gain and gives back what was forgotten.
    champion_weight_share: float = 0.0

    def validate(self, source: str) -> None:
        if self.max_squad_f1_drop < 0:
            raise ConfigError(source, "adapt.max_squad_f1_drop", f"must be 0 or more, got {self.max_squad_f1_drop}")
        if not 0.0 <= self.champion_weight_share < 1.0:
            raise ConfigError(source, "adapt.champion_weight_share",
                              f"must be at least 0 and below 1, got {self.champion_weight_share}")


@dataclass
class TuneConfig:
    """Search space and budget for `make tune` (Trainer.hyperparameter_search with Optuna)."""

    n_trials: int = 6
    max_train_examples: int = 400
    max_eval_examples: int = 100
    learning_rate: list[float] = field(default_factory=lambda: [1e-5, 3e-4])
    num_train_epochs: list[int] = field(default_factory=lambda: [1, 3])
    per_device_train_batch_size: list[int] = field(default_factory=lambda: [8, 16, 32])
    warmup_ratio: list[float] = field(default_factory=lambda: [0.0, 0.2])
    output_file: str | None = None

    def validate(self, source: str) -> None:
        if self.n_trials <= 0:
            raise ConfigError(source, "tune.n_trials", "must be positive")
        for name in ("learning_rate", "num_train_epochs", "warmup_ratio"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ConfigError(source, f"tune.{name}", f"must be [low, high], got {bounds}")
        if not self.per_device_train_batch_size:
            raise ConfigError(source, "tune.per_device_train_batch_size", "must list at least one size")


@dataclass
class ExperimentConfig:
    model: ModelConfig
    data: DataConfig
    training: TrainingConfig
    gate: GateConfig
    # The model's InferenceParams, saved with it as qa.json (one type for training and serving).
    preprocessing: InferenceParams = field(default_factory=InferenceParams)
    tune: TuneConfig = field(default_factory=TuneConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    # Where the config was read from; not a YAML key.
    source: str = field(default="<memory>", metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return data


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {exc}") from exc
    return config_from_dict(raw, source=str(path))


def model_config(model_dir: str | Path, override: str | Path | None = None) -> ExperimentConfig:
    """The config whose thresholds judge a model directory (the gate's and the card's rule).

    `override` when given; else the config file the model was trained with (named in its
    metrics.json), so an edit to that file moves the gate; else the copy saved with the model.
    """
    if override:
        return load_config(override)
    model_dir = Path(model_dir)
    try:
        trained_with = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8"))["training"]["config"]
    except (OSError, ValueError, KeyError, TypeError):
        trained_with = None
    if isinstance(trained_with, str) and Path(trained_with).is_file():
        return load_config(trained_with)
    saved = model_dir / TRAIN_CONFIG_FILE
    if not saved.exists():
        raise ConfigError(saved, "", "no gate thresholds: pass --config or train the model with this project")
    return load_config(saved)


def config_from_dict(raw: Any, source: str = "<memory>") -> ExperimentConfig:
    config = _build(ExperimentConfig, raw, source, "")
    config.source = source
    for section in (config.model, config.data, config.training, config.gate, config.tune, config.tracking,
                    config.adapt):
        section.validate(source)
    try:
        config.preprocessing.validate()
    except InvalidParams as exc:
        raise ConfigError(source, f"preprocessing.{exc.field}", exc.problem) from None
    return config


def expand_env(value: str) -> str:
    """Expand ${VAR}; SQUAD_DIR falls back to the shared data folder."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name == "SQUAD_DIR":
            return os.environ.get(name, DEFAULT_SQUAD_DIR)
        if name not in os.environ:
            raise KeyError(name)
        return os.environ[name]

    return _ENV_PATTERN.sub(replace, value)


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(raw, dict):
        raise ConfigError(source, where, f"must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(source, f"{prefix}{key}", f"unknown key{hint}")
    values = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(source, f"{prefix}{name}", "required key is missing")
            continue
        values[name] = _coerce(hints[name], raw[name], source, f"{prefix}{name}")
    return cls(**values)


def _coerce(hint: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        return _build(hint, value, source, path + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, source, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(source, path, f"must be a list, got {type(value).__name__}")
        return [_coerce(args[0], item, source, f"{path}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, f"must be an integer, got {value!r}")
        return value
    if hint is float:
        # YAML reads 3e-5 (no dot) as a string; accept numeric strings for floats only.
        if isinstance(value, bool):
            raise ConfigError(source, path, f"must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(source, path, f"must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, bool):
            raise ConfigError(source, path, f"must be a string, got {value!r}: YAML reads an unquoted "
                              "off/on/no/yes as a boolean, so quote it (e.g. 'off')")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(source, path, f"must be a non-empty string, got {value!r}")
        try:
            return expand_env(value)
        except KeyError as exc:
            raise ConfigError(source, path, f"environment variable {exc.args[0]} is not set") from exc
    raise ConfigError(source, path, f"unsupported type {hint}")
