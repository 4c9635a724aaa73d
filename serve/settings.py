"""Service settings: request limits and the model to serve, read from the environment and validated.

Every variable is optional; a bad value stops start-up with one line that names the variable.

    QA_MODEL_DIR                 model directory (default models/minilm-l6-squad)
    QA_BACKEND                   auto | torch | ... (default auto)
    QA_MODEL_NAME                name reported in answers and metrics (default: the directory name)
    QA_MAX_CONTEXT_CHARS         longest context accepted, in characters (default 100000)
    QA_MAX_QUESTION_CHARS        longest question accepted, in characters (default 1000)
    QA_MAX_PASSAGES              most passages in one context given as a list (default 1000)
    QA_MAX_BATCH_ITEMS           most items in one batch request (default 32)
    QA_MAX_BATCH_CONTEXT_CHARS   most context characters in one batch request, all items (default 400000)
    QA_MAX_BODY_BYTES            largest request body, in bytes (default 8 MiB)
    QA_DOCUMENT_CACHE_MB         long contexts kept tokenised and indexed per worker, in MiB; 0: none (default 64)
    QA_LOAD_IN_BACKGROUND        1: serve /healthz at once and load the model in a thread; /readyz is 503
                                 until it is ready, or for good (with the reason) if loading fails (default 0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qa.documents import DEFAULT_CACHE_BYTES
from qa.errors import SettingsError
from qa.model_dir import SHIPPED_MODEL_DIR


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path(SHIPPED_MODEL_DIR)
    backend: str = "auto"
    model_name: str = ""
    max_context_chars: int = 100_000
    max_question_chars: int = 1_000
    max_passages: int = 1_000
    max_batch_items: int = 32
    max_batch_context_chars: int = 400_000
    max_body_bytes: int = 8 * 1024 * 1024
    document_cache_mb: int = DEFAULT_CACHE_BYTES // 2**20
    load_in_background: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if not self.model_name:
            object.__setattr__(self, "model_name", self.model_dir.resolve().name or str(self.model_dir))
        for name in ("max_context_chars", "max_question_chars", "max_passages", "max_batch_items",
                     "max_batch_context_chars"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.document_cache_mb < 0:
            raise SettingsError(f"document_cache_mb must be 0 (no cache) or more, got {self.document_cache_mb}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            model_dir=Path(env.get("QA_MODEL_DIR") or SHIPPED_MODEL_DIR),
            backend=(env.get("QA_BACKEND") or "auto").strip(),
            model_name=(env.get("QA_MODEL_NAME") or "").strip(),
            max_context_chars=env_int(env, "QA_MAX_CONTEXT_CHARS", defaults.max_context_chars, minimum=1),
            max_question_chars=env_int(env, "QA_MAX_QUESTION_CHARS", defaults.max_question_chars, minimum=1),
            max_passages=env_int(env, "QA_MAX_PASSAGES", defaults.max_passages, minimum=1),
            max_batch_items=env_int(env, "QA_MAX_BATCH_ITEMS", defaults.max_batch_items, minimum=1),
            max_batch_context_chars=env_int(
                env, "QA_MAX_BATCH_CONTEXT_CHARS", defaults.max_batch_context_chars, minimum=1
            ),
            max_body_bytes=env_int(env, "QA_MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1024),
            document_cache_mb=env_int(env, "QA_DOCUMENT_CACHE_MB", defaults.document_cache_mb, minimum=0),
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
