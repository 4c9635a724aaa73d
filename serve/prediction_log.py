"""An opt-in, sampled log of predictions as JSON lines, keyed by request id (QA_PREDICTION_LOG).

It exists so that a bad answer a user reports (quoting the X-Request-ID the service returned) can
be traced: which model and backend answered, what was read and what came out. It never holds the
question's or the context's text, only their lengths and sha256 (a user who still has the text can
show it is the same). A request is in or out as a whole; each of its questions is one line.
Every gunicorn worker appends to the same file with one write per request, in append mode, so
lines from different workers never interleave.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from qa.decoding import Answer


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def text_fields(name: str, value: str | Sequence) -> dict:
    """Length and hash of a question or a context (for passages: of each passage's text, joined by U+001E)."""
    if isinstance(value, str):
        return {f"{name}_chars": len(value), f"{name}_sha256": sha256_text(value)}
    texts = [p if isinstance(p, str) else str(p) for p in value]
    return {f"{name}_chars": sum(len(t) for t in texts), f"{name}_sha256": sha256_text("\x1e".join(texts)),
            "passages": len(texts)}


class PredictionLog:
    def __init__(self, path: Path, sample: float, draw: Callable[[], float] = random.random) -> None:
        self.path = Path(path)
        self.sample = sample
        self._draw = draw
        self._lock = threading.Lock()
        self._fd: int | None = None  # opened in the worker on first use, never inherited across a fork

    def wanted(self) -> bool:
        return self._draw() < self.sample

    def write(self, request_id: str, route: str, served: dict, questions: Sequence[str], contexts: Sequence,
              answers: Sequence[Sequence[Answer]], options: dict) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for question, context, ranked in zip(questions, contexts, answers):
            top = ranked[0] if ranked else None
            record = {"time": now, "request_id": request_id, "route": route, **served,
                      **text_fields("question", question), **text_fields("context", context),
                      "options": options}
            if top is not None:
                record["answer"] = {"start": top.start, "end": top.end, "score": round(top.score, 6),
                                    "empty": not top.text, "passage": top.passage}
                if top.reading is not None:
                    record["read"] = {"question_tokens": top.reading.question_tokens,
                                      "context_tokens": top.reading.context_tokens, "windows": top.reading.windows}
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        data = "".join(lines).encode("utf-8")
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.write(self._fd, data)
