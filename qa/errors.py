"""Errors the inference core raises, with messages a person can act on."""

from __future__ import annotations

from pathlib import Path


class ModelLoadError(RuntimeError):
    """The model directory is missing, incomplete or unreadable."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot load model from {self.path}: {problem}")


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use; the message names it."""
