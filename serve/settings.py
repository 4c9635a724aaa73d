"""Service settings: request limits and the model to serve, read from the environment and validated.

Every variable is optional; a bad value stops start-up with one line that names the variable.

    QA_MODEL_DIR                 model directory (default models/minilm-l6-squad)
    QA_BACKEND                   auto | torch | ... (default auto)
    QA_MODEL_NAME                name reported in answers and metrics (default: the directory name)
    QA_MAX_CONTEXT_CHARS         longest context accepted, in characters (default 100000)
    QA_MAX_QUESTION_CHARS        longest question accepted, in characters (default 1000)
    QA_MAX_BATCH_ITEMS           most items in one batch request (default 32)
    QA_MAX_BATCH_CONTEXT_CHARS   most context characters in one batch request, all items (default 400000)
    QA_MAX_BODY_BYTES            largest request body, in bytes (default 8 MiB)
    QA_LOAD_IN_BACKGROUND        1: serve /healthz at once and load the model in a thread; /readyz is 503
                                 until it is ready, or for good (with the reason) if loading fails (default 0)
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serve.errors import ModelLoadError

DEFAULT_MODEL_DIR = "models/minilm-l6-squad"


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    backend: str = "auto"
    model_name: str = ""
    max_context_chars: int = 100_000
    max_question_chars: int = 1_000
    max_batch_items: int = 32
    max_batch_context_chars: int = 400_000
    max_body_bytes: int = 8 * 1024 * 1024
    load_in_background: bool = False
    # Answer options the API accepts (issue 3): inclusive ranges.
    top_k_range: tuple[int, int] = field(default=(1, 10))
    max_answer_len_range: tuple[int, int] = field(default=(1, 100))

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if not self.model_name:
            object.__setattr__(self, "model_name", self.model_dir.resolve().name or str(self.model_dir))
        for name in ("max_context_chars", "max_question_chars", "max_batch_items", "max_batch_context_chars"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            model_dir=Path(env.get("QA_MODEL_DIR") or DEFAULT_MODEL_DIR),
            backend=(env.get("QA_BACKEND") or "auto").strip(),
            model_name=(env.get("QA_MODEL_NAME") or "").strip(),
            max_context_chars=env_int(env, "QA_MAX_CONTEXT_CHARS", defaults.max_context_chars, minimum=1),
            max_question_chars=env_int(env, "QA_MAX_QUESTION_CHARS", defaults.max_question_chars, minimum=1),
            max_batch_items=env_int(env, "QA_MAX_BATCH_ITEMS", defaults.max_batch_items, minimum=1),
            max_batch_context_chars=env_int(
                env, "QA_MAX_BATCH_CONTEXT_CHARS", defaults.max_batch_context_chars, minimum=1
            ),
            max_body_bytes=env_int(env, "QA_MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024),
            load_in_background=env_bool(env, "QA_LOAD_IN_BACKGROUND", False),
        )


def env_int(
    env: Mapping[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def check_model_dir(model_dir: Path) -> None:
    """Cheap start-up check of a model directory, without loading the weights.

    Run by the gunicorn master before it forks workers, so a wrong path or a truncated
    download fails in one line instead of as a crash loop of workers.
    """
    from tokenizers import Tokenizer

    from serve.engine import TOKENIZER_FILE, InferenceParams

    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise ModelLoadError(model_dir, "no such directory")
    if not model_dir.is_dir():
        raise ModelLoadError(model_dir, "not a directory")
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelLoadError(model_dir, "config.json is missing")
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(model_dir, f"config.json is not valid: {exc}") from None
    tokenizer = model_dir / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is missing")
    try:
        Tokenizer.from_file(str(tokenizer))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the user
        raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is unreadable: {exc}") from None
    InferenceParams.load(model_dir)
    if not any((model_dir / name).is_file() for name in weight_files()):
        raise ModelLoadError(model_dir, f"no weights file (expected one of {', '.join(weight_files())})")
    safetensors = model_dir / "model.safetensors"
    if safetensors.is_file():
        _check_safetensors(model_dir, safetensors)


def weight_files(backend: str | None = None) -> tuple[str, ...]:
    """Weight files relative to a model directory, the given backend's first."""
    from serve.backends import ONNX_FILES

    names = ["model.safetensors", *ONNX_FILES.values(), "pytorch_model.bin"]
    if backend in ONNX_FILES:
        names.insert(0, names.pop(names.index(ONNX_FILES[backend])))
    return tuple(names)


def _check_safetensors(model_dir: Path, path: Path) -> None:
    """The header must parse and every tensor must lie inside the file (catches truncation)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
        data_size = size - 8 - header_len
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise ModelLoadError(model_dir, f"model.safetensors is corrupt: {exc}") from None
    if end > data_size:
        raise ModelLoadError(
            model_dir, f"model.safetensors is truncated: {data_size} data bytes, tensors need {end}"
        )
