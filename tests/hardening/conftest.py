"""Fixtures of the hardening tests: real gunicorn processes, always stopped at the end."""

from __future__ import annotations

import pytest
from gunicorn_server import GunicornServer


@pytest.fixture()
def start_gunicorn():
    servers: list[GunicornServer] = []

    def start(app: str = "serve.wsgi:app", **env: str) -> GunicornServer:
        server = GunicornServer(env, app=app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def hardening_engine(tiny_bert_dir):
    from qa.engine import QAEngine

    return QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1)


@pytest.fixture(scope="session")
def hardening_settings(tiny_bert_dir):
    from serve.settings import Settings

    return Settings(model_dir=tiny_bert_dir, backend="torch", model_name="tiny-bert")


@pytest.fixture()
def client(hardening_engine, hardening_settings):
    from serve.app import create_app

    return create_app(hardening_engine, hardening_settings).test_client()
