"""sha256 of a file: one implementation for data files, weights, graphs and gate records."""

from __future__ import annotations

import gzip
import hashlib
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
