"""WSGI entry point: `gunicorn -c serve/gunicorn.conf.py serve.wsgi:app`.

Settings come from the environment (see serve/settings.py): QA_MODEL_DIR (default
models/minilm-l6-squad) and QA_BACKEND (default auto: onnx-int8 once its gate passed, else
onnx-fp32 if exported, else torch) pick the model. Importing this module loads the model and
answers a warm-up question, once per gunicorn worker. Requests go through the micro-batcher
(serve/batching.py): QA_BATCH_MAX_SIZE (windows per model call, default 1),
QA_BATCH_MAX_WAIT_MS (default 2), QA_BATCH_MAX_PADDING (default 0.25), QA_MODEL_LANES (default
auto: a single-thread session per core, used side by side under load).

To serve through another engine, change `build_engine`:
anything with `answer_many(questions, contexts, **options)` (qa.engine.Answerer) works.
"""

from __future__ import annotations

import sys

from flask import Flask

from qa.engine import Answerer
from qa.errors import ModelLoadError, SettingsError
from serve.app import create_app
from serve.settings import Settings


def build_engine(settings: Settings) -> Answerer:
    from qa.engine import QAEngine
    from serve.batching import MicroBatcher

    engine = QAEngine.from_model_dir(settings.model_dir, backend=settings.backend,
                                     document_cache_bytes=settings.document_cache_mb * 2**20)
    # The batcher owns the model calls: one on every core when the worker is idle, one per core
    # side by side under load (QA_MODEL_LANES), so calls never fight over threads; requests
    # arriving together can share a call (QA_BATCH_MAX_SIZE).
    return MicroBatcher.from_env(engine)


def build_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    return create_app(lambda: build_engine(settings), settings)


def _stop_startup(exc: Exception) -> None:
    """One line naming the problem, and no half-ready server."""
    # Library messages can run to paragraphs (transformers); the first line names the problem.
    line = next((part for part in str(exc).splitlines() if part.strip()), repr(exc))
    if "gunicorn" in sys.modules:
        # gunicorn prints an AppImportError as one line and halts the master (exit code 4)
        # instead of respawning a worker that can never boot.
        from gunicorn.errors import AppImportError

        raise AppImportError(f"error: {line}") from None
    raise SystemExit(f"error: {line}")


try:
    app = build_app()
except (ModelLoadError, SettingsError) as _exc:
    _stop_startup(_exc)
