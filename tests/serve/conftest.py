"""Fixtures of the HTTP service tests: one tiny-model engine and app per session."""

from __future__ import annotations

import pytest
from helpers import model_with_null_threshold

from qa.engine import QAEngine
from serve.app import create_app
from serve.settings import Settings


@pytest.fixture(scope="session")
def tiny_engine(tiny_bert_dir) -> QAEngine:
    return QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1)


@pytest.fixture(scope="session")
def tiny_settings(tiny_bert_dir) -> Settings:
    return Settings(model_dir=tiny_bert_dir, backend="torch", model_name="tiny-bert")


@pytest.fixture(scope="session")
def app(tiny_engine, tiny_settings):
    return create_app(tiny_engine, tiny_settings)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def abstaining_engine(tiny_bert_dir, tmp_path_factory) -> QAEngine:
    """Abstains whenever it may: any null score beats any span by more than -1e6 logits."""
    model_dir = model_with_null_threshold(tiny_bert_dir, tmp_path_factory.mktemp("abstain") / "m", -1e6)
    return QAEngine.from_model_dir(model_dir, backend="torch", threads=1)


@pytest.fixture(scope="session")
def abstaining_client(abstaining_engine, tiny_settings):
    return create_app(abstaining_engine, tiny_settings).test_client()
