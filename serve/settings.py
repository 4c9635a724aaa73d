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

Public endpoints (serve/security.py; all off by default):
    QA_API_KEYS                  API keys the answering routes require, separated by commas or whitespace
    QA_API_KEYS_FILE             a file of API keys, one per line (# comments), e.g. a mounted Kubernetes Secret
    QA_METRICS_REQUIRE_KEY       1: /metrics needs a key too (default 0: open to the scraper; probes are always open)
    QA_RATE_LIMIT                requests per key (or client address without one) on the answering routes,
                                 in the limits library's notation, e.g. "60/minute;1000/hour" (default: none)
    QA_RATE_LIMIT_STORAGE_URL    where the counts live: memory:// (each worker process counts alone) or
                                 redis://host:6379 (shared by every worker and replica) (default memory://)
    QA_CORS_ORIGINS              origins allowed to call /v1/ from a browser, comma-separated (default: none)
    QA_PROXY_HOPS                proxies in front that set X-Forwarded-For/-Proto; the client address for rate
                                 limits is taken from them (default 0: the socket's peer)
    QA_PREDICTION_LOG            a JSON-lines file of sampled predictions, keyed by request id; hashes and lengths
                                 of the text, never the text (default: none)
    QA_PREDICTION_LOG_SAMPLE     the share of requests logged, in (0, 1] (default 0.1)
    QA_FEEDBACK                  on: accept users' verdicts on answers at POST /v1/feedback and in the form,
                                 stored with their question and context (default off)
    QA_FEEDBACK_URL              the feedback database (default sqlite:///outputs/feedback.db; PostgreSQL:
                                 postgresql+psycopg://user:password@host/db)
    QA_FEEDBACK_KEYS             keys that may read, export and delete feedback (GET/DELETE /v1/feedback);
                                 without any, nobody can read it back over HTTP
    QA_MODEL_METRICS             0: leave out the model-behaviour metrics (answer scores, abstentions, tokens
                                 and windows read; qa/monitoring.py) (default 1)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qa.documents import DEFAULT_CACHE_BYTES
from qa.errors import SettingsError
from qa.model_dir import SHIPPED_MODEL_DIR

MIN_KEY_CHARS = 16
ORIGIN_PATTERN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


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
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never in a log line
    metrics_require_key: bool = False
    rate_limit: str = ""
    rate_limit_storage_url: str = "memory://"
    cors_origins: tuple[str, ...] = ()
    proxy_hops: int = 0
    prediction_log: Path | None = None
    prediction_log_sample: float = 0.1
    model_metrics: bool = True
    feedback: bool = False
    feedback_url: str = field(default="sqlite:///outputs/feedback.db", repr=False)  # may hold a password
    feedback_keys: tuple[str, ...] = field(default=(), repr=False)

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
        if self.feedback_keys and not self.feedback:
            raise SettingsError("QA_FEEDBACK_KEYS is set but feedback is off: set QA_FEEDBACK=on as well")
        if not re.fullmatch(r"(sqlite|postgresql(\+psycopg)?)://\S*", self.feedback_url):
            raise SettingsError("feedback_url must be a sqlite:/// or postgresql+psycopg:// URL, got "
                                f"{self.feedback_url.split('@')[-1]!r}")  # never the password
        short = [i for i, key in enumerate(self.api_keys + self.feedback_keys) if len(key) < MIN_KEY_CHARS]
        if short:  # never echo a key
            raise SettingsError(f"API key number {short[0] + 1} has fewer than {MIN_KEY_CHARS} characters; use long "
                                "random keys: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if self.rate_limit:
            from limits import parse_many

            try:
                parse_many(self.rate_limit)
            except ValueError as exc:
                raise SettingsError(f"rate_limit {self.rate_limit!r} is not a rate limit such as '60/minute': "
                                    f"{exc}") from None
        if not re.fullmatch(r"(memory|redis|rediss|redis\+cluster|redis\+sentinel)://\S*", self.rate_limit_storage_url):
            raise SettingsError(f"rate_limit_storage_url {self.rate_limit_storage_url!r} must be memory:// or a "
                                "redis:// URL")
        for origin in self.cors_origins:
            if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
                raise SettingsError(f"CORS origin {origin!r} must be scheme://host[:port] (no path), or *")
        if self.proxy_hops < 0:
            raise SettingsError(f"proxy_hops must be 0 or more, got {self.proxy_hops}")
        if not 0 < self.prediction_log_sample <= 1:
            raise SettingsError(f"prediction_log_sample must be in (0, 1], got {self.prediction_log_sample}")

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
            api_keys=api_keys_from(env),
            metrics_require_key=env_bool(env, "QA_METRICS_REQUIRE_KEY", False),
            rate_limit=(env.get("QA_RATE_LIMIT") or "").strip(),
            rate_limit_storage_url=(env.get("QA_RATE_LIMIT_STORAGE_URL") or defaults.rate_limit_storage_url).strip(),
            cors_origins=tuple(o.strip().rstrip("/") for o in (env.get("QA_CORS_ORIGINS") or "").split(",")
                               if o.strip()),
            proxy_hops=env_int(env, "QA_PROXY_HOPS", 0, minimum=0),
            prediction_log=Path(env["QA_PREDICTION_LOG"]) if (env.get("QA_PREDICTION_LOG") or "").strip() else None,
            prediction_log_sample=env_float(env, "QA_PREDICTION_LOG_SAMPLE", defaults.prediction_log_sample),
            model_metrics=env_bool(env, "QA_MODEL_METRICS", True),
            feedback=env_bool(env, "QA_FEEDBACK", False),
            feedback_url=(env.get("QA_FEEDBACK_URL") or defaults.feedback_url).strip(),
            feedback_keys=tuple(dict.fromkeys((env.get("QA_FEEDBACK_KEYS") or "").replace(",", " ").split())),
        )


def api_keys_from(env: Mapping[str, str]) -> tuple[str, ...]:
    """QA_API_KEYS and the lines of QA_API_KEYS_FILE (blank lines and # comments skipped)."""
    keys = (env.get("QA_API_KEYS") or "").replace(",", " ").split()
    path = (env.get("QA_API_KEYS_FILE") or "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"QA_API_KEYS_FILE={path!r} cannot be read: {exc}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            raise SettingsError(f"QA_API_KEYS_FILE={path!r} holds no key")
    return tuple(dict.fromkeys(keys))


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


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1 or 0)")
