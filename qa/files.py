"""Small file helpers every stage uses: one sha256, one JSON writer, and how a written record names a path."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path


def file_sha256(path: str | Path, decompress_gzip: bool = True) -> str:
    """Hex sha256 of a file's content; of the decompressed content for a .gz file (as SOURCES.md lists them)."""
    path = Path(path)
    digest = hashlib.sha256()
    opener = gzip.open if decompress_gzip and path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, payload) -> None:
    """Pretty, UTF-8 JSON with a final newline; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def repository_path(path: str | Path | None) -> str:
    """A path inside the working directory as relative to it, any other as given: records and cards
    travel with the repository, and an absolute path names one machine."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (TypeError, ValueError):
        return str(path)
