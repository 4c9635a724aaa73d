import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No test writes to outputs/mlflow.db; tests/train/test_tracking.py turns tracking on with its own store.
os.environ["DISABLE_MLFLOW_INTEGRATION"] = "TRUE"

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))
sys.path.insert(0, str(TESTS_DIR.parent))  # bench/ (shared /proc helpers)
FIXTURES = TESTS_DIR / "fixtures"

from helpers import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), "distilbert")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL server for the session (skipped where none is installed, failed under CI)."""
    from postgres_server import postgres_bin, running_postgres

    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    with running_postgres() as url:
        yield url
