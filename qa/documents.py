"""A per-process cache of long contexts: the second question about a document costs model calls only.

A context is keyed by the sha256 of its text. What is kept is its tokens on their own (independent
of any question, qa.windowing.ContextTokens), its BM25 words and, per window layout, the BM25 index
of its windows (qa/ranking.py). The cache is a least-recently-used map bounded in bytes: an entry
counts the bytes of its arrays and indexes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qa.windowing import ContextTokens

# Shorter contexts (a paragraph) are tokenised again: hashing and bookkeeping would cost about as much.
MIN_CACHED_CHARS = 2_000
# Per process (a gunicorn worker); a 100,000-character document takes about 2 MB.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass
class Document:
    """A context's tokens and what was derived from them; `key` is set while the cache holds it."""

    tokens: ContextTokens
    nbytes: int
    key: str | None = None
    extras: dict[Hashable, Any] = field(default_factory=dict)


class DocumentCache:
    def __init__(
        self,
        max_bytes: int,
        on_hit: Callable[[], None] | None = None,
        on_miss: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 (no cache) or a positive integer, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.on_hit = on_hit  # called on each lookup of a long context, e.g. to count it in /metrics
        self.on_miss = on_miss
        self._entries: OrderedDict[str, Document] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(context: str) -> str:
        return hashlib.sha256(context.encode("utf-8", "surrogatepass")).hexdigest()

    def documents(
        self, contexts: Sequence[str], encode: Callable[[list[str]], list[ContextTokens]]
    ) -> list[Document]:
        """A Document per context: cached ones from the cache, the others encoded (in one batch) and
        kept when they are long enough and fit."""
        keys = [self.key(c) if self.max_bytes and len(c) >= MIN_CACHED_CHARS else None for c in contexts]
        found: list[Document | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key) if key else None
                if entry is not None:
                    self._entries.move_to_end(key)
                found.append(entry)
        missing = [i for i, entry in enumerate(found) if entry is None]
        encoded = encode([contexts[i] for i in missing]) if missing else []
        for i, tokens in zip(missing, encoded):
            found[i] = Document(tokens, tokens.nbytes)
        for i, key in enumerate(keys):
            if key is None:
                continue
            if i in missing:
                self._count(self.on_miss, "misses")
                self._put(key, found[i])
            else:
                self._count(self.on_hit, "hits")
        return found  # type: ignore[return-value]

    def add_extra(self, document: Document, name: Hashable, value: Any, nbytes: int) -> None:
        """Keep something derived from a document (its words, a window index) with it, in its bytes."""
        with self._lock:
            if name in document.extras:
                return
            document.extras[name] = value
            document.nbytes += nbytes
            if document.key is not None and self._entries.get(document.key) is document:
                self.bytes += nbytes
                self._evict()

    def _count(self, callback: Callable[[], None] | None, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        if callback:
            callback()

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            evicted.key = None
            self.bytes -= evicted.nbytes

    def _put(self, key: str, document: Document) -> None:
        if document.nbytes > self.max_bytes:
            return  # larger than the whole cache: answered, not kept
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                old.key = None
                self.bytes -= old.nbytes
            document.key = key
            self._entries[key] = document
            self.bytes += document.nbytes
            self._evict()
