"""The question-answering engine: windowing -> model -> span decoding.

`make evaluate`, `make gate` and the HTTP service all answer through `QAEngine`, so the
numbers on the model card are the numbers of the code that serves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from serve.backends import Backend, default_threads, load_backend, resolve_backend_name
from serve.decoding import (
    DEFAULT_MAX_ANSWER_LENGTH,
    DEFAULT_N_BEST,
    Answer,
    decode_example,
)
from serve.errors import ModelLoadError
from serve.windowing import (
    DEFAULT_DOC_STRIDE,
    DEFAULT_MAX_QUERY_LENGTH,
    DEFAULT_MAX_SEQ_LENGTH,
    Window,
    Windower,
)

INFERENCE_PARAMS_FILE = "qa.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class InferenceParams:
    """How a model reads and answers; saved next to the weights in qa.json."""

    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    doc_stride: int = DEFAULT_DOC_STRIDE
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH
    n_best: int = DEFAULT_N_BEST
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH

    @classmethod
    def load(cls, model_dir: Path) -> InferenceParams:
        path = model_dir / INFERENCE_PARAMS_FILE
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} has unknown field(s): {', '.join(unknown)}")
        for name, value in raw.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} field {name!r} must be a positive integer")
        params = cls(**raw)
        if params.max_query_length + params.doc_stride + 4 > params.max_seq_length:
            raise ModelLoadError(
                model_dir,
                f"{INFERENCE_PARAMS_FILE}: max_seq_length={params.max_seq_length} leaves no room for context after "
                f"max_query_length={params.max_query_length} and doc_stride={params.doc_stride}",
            )
        return params

    def save(self, model_dir: Path) -> None:
        (model_dir / INFERENCE_PARAMS_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


class QAEngine:
    def __init__(
        self,
        backend: Backend,
        windower: Windower,
        params: InferenceParams | None = None,
        batch_size: int = 16,
        model_dir: Path | None = None,
    ) -> None:
        self.backend = backend
        self.windower = windower
        self.params = params or InferenceParams()
        self.batch_size = batch_size
        self.model_dir = model_dir

    @classmethod
    def from_model_dir(
        cls, model_dir: str | Path, backend: str = "auto", threads: int | None = None, batch_size: int = 16
    ) -> QAEngine:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelLoadError(model_dir, "no such directory")
        tokenizer_file = model_dir / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is missing")
        params = InferenceParams.load(model_dir)
        try:
            windower = Windower.from_file(
                tokenizer_file,
                max_seq_length=params.max_seq_length,
                doc_stride=params.doc_stride,
                max_query_length=params.max_query_length,
            )
        except Exception as exc:  # noqa: BLE001 - a corrupt tokenizer is a load error
            raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is unreadable: {exc}") from exc
        name = resolve_backend_name(backend, model_dir)
        loaded = load_backend(name, model_dir, threads=threads if threads is not None else default_threads())
        return cls(loaded, windower, params, batch_size=batch_size, model_dir=model_dir)

    def window_logits(self, windows: Sequence[Window]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start/end logits for each window, batching windows of similar length together."""
        starts: list[np.ndarray] = [np.empty(0)] * len(windows)
        ends: list[np.ndarray] = [np.empty(0)] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for first in range(0, len(order), self.batch_size):
            chunk = order[first : first + self.batch_size]
            batch = self.windower.pad([windows[i] for i in chunk])
            start_logits, end_logits = self.backend(batch.as_inputs(self.backend.input_names))
            for row, i in enumerate(chunk):
                starts[i], ends[i] = start_logits[row], end_logits[row]
        return starts, ends

    def decode(
        self,
        contexts: Sequence[str],
        windows: Sequence[Window],
        starts: Sequence[np.ndarray],
        ends: Sequence[np.ndarray],
        top_k: int,
        max_answer_length: int,
    ) -> list[list[Answer]]:
        """Answers per context from the logits of all windows (windows carry their example index)."""
        by_example: list[list[int]] = [[] for _ in contexts]
        for i, window in enumerate(windows):
            by_example[window.example_index].append(i)
        return [
            decode_example(
                contexts[example],
                [windows[i] for i in idx],
                [starts[i] for i in idx],
                [ends[i] for i in idx],
                n_best=self.params.n_best,
                max_answer_length=max_answer_length,
                top_k=top_k,
            )
            for example, idx in enumerate(by_example)
        ]

    def answer_many(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        top_k: int = 1,
        max_answer_length: int | None = None,
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 256,
    ) -> list[list[Answer]]:
        """Answers for each (question, context) pair, best first; [] when the context has no tokens."""
        max_answer_length = max_answer_length or self.params.max_answer_length
        results: list[list[Answer]] = []
        for first in range(0, len(questions), chunk_size):
            qs = questions[first : first + chunk_size]
            cs = contexts[first : first + chunk_size]
            windows = self.windower.windows(qs, cs)
            starts, ends = self.window_logits(windows) if windows else ([], [])
            results.extend(self.decode(cs, windows, starts, ends, top_k, max_answer_length))
            if progress:
                progress(len(qs))
        return results

    def answer(
        self, question: str, context: str, top_k: int = 1, max_answer_length: int | None = None
    ) -> list[Answer]:
        return self.answer_many([question], [context], top_k=top_k, max_answer_length=max_answer_length)[0]
