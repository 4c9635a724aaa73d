"""Model runtimes behind one call: padded token arrays in, start/end logits out.

Each backend imports its runtime lazily, so a server that only uses ONNX Runtime never
imports torch or transformers.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from serve.errors import ModelLoadError

TORCH = "torch"
BACKENDS = (TORCH,)


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """start_logits, end_logits as float32 arrays of shape [batch, seq]."""


class TorchBackend:
    name = TORCH

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForQuestionAnswering
        except ImportError as exc:  # the runtime image ships without torch
            raise ModelLoadError(model_dir, f"backend 'torch' needs torch and transformers: {exc}") from exc
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        try:
            model = AutoModelForQuestionAnswering.from_pretrained(
                str(model_dir), dtype=torch.float32, local_files_only=True
            )
        except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear line
            raise ModelLoadError(model_dir, f"cannot load the weights: {exc}") from exc
        self.model = model.eval()
        accepted = inspect.signature(self.model.forward).parameters
        # DistilBERT-style models take no token_type_ids.
        self.input_names = tuple(
            n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted
        )

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return out.start_logits.float().numpy(), out.end_logits.float().numpy()


def default_threads() -> int | None:
    value = os.environ.get("QA_THREADS")
    return int(value) if value else None


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name == TORCH:
        return TorchBackend(model_dir, threads=threads)
    raise ModelLoadError(model_dir, f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def resolve_backend_name(name: str, model_dir: Path) -> str:
    """'auto' picks the fastest backend the model directory supports."""
    if name != "auto":
        return name
    return TORCH
