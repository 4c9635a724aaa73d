"""Model tier: behaviour of the shipped model (models/minilm-l6-squad), as Made-With-ML tests a model.

Without the directory these tests skip on a laptop but fail under CI (CI=true), where the
shipped model must be present.
"""

import os
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "minilm-l6-squad"


@pytest.fixture(scope="session")
def shipped_engine():
    from qa.engine import QAEngine

    if not (SHIPPED / "config.json").is_file():
        message = f"the shipped model is missing: {SHIPPED}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return QAEngine.from_model_dir(SHIPPED, backend="auto")


@pytest.fixture(scope="session")
def ask(shipped_engine):
    def answer(question: str, context: str):
        best = shipped_engine.answer(question, context)
        assert best, "no answer"
        return best[0]

    return answer
