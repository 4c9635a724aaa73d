"""Test-only WSGI app: the real service, whose engine holds a question until the test releases it.

A question "hold:NAME" writes NAME.started (holding the worker's pid) into $QA_TEST_HOLD_DIR and
waits until NAME.release appears there, so a test knows a request is in flight, and in which
worker, without guessing at timings. Every other question is answered at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from serve.app import create_app
from serve.settings import Settings

HOLD_PREFIX = "hold:"
HOLD_LIMIT_S = 120  # a forgotten release must not hang a worker for ever


class HoldingEngine:
    def __init__(self, engine, hold_dir: Path) -> None:
        self._engine = engine
        self._hold_dir = hold_dir
        self.backend = engine.backend
        self.model_dir = engine.model_dir

    def answer_many(self, questions, contexts, **options):
        for question in questions:
            if question.startswith(HOLD_PREFIX):
                self._hold(question[len(HOLD_PREFIX) :].strip())
        return self._engine.answer_many(questions, contexts, **options)

    def _hold(self, name: str) -> None:
        (self._hold_dir / f"{name}.started").write_text(str(os.getpid()))
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not (self._hold_dir / f"{name}.release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"hold {name!r} was never released")
            time.sleep(0.02)  # polling the release file


def build_app():
    from qa.engine import QAEngine

    settings = Settings.from_env()
    hold_dir = Path(os.environ["QA_TEST_HOLD_DIR"])
    return create_app(
        lambda: HoldingEngine(
            QAEngine.from_model_dir(settings.model_dir, backend=settings.backend), hold_dir
        ),
        settings,
    )


app = build_app()
