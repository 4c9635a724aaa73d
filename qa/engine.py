"""The question-answering engine: windowing -> model -> span decoding.

`make evaluate`, `make gate` and the HTTP service all answer through `QAEngine`, so the
numbers on the model card are the numbers of the code that serves.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.backends import Backend, default_threads, load_backend, resolve_backend_name
from qa.decoding import Answer, decode_example
from qa.documents import DEFAULT_CACHE_BYTES, Document, DocumentCache
from qa.errors import ModelLoadError
from qa.model_dir import CONFIG_FILE, TOKENIZER_FILE, load_params
from qa.params import AnswerOptions, InferenceParams
from qa.ranking import DocumentWords, WindowIndex, windows_to_read
from qa.windowing import Reading, Window, Windower, Windows

WINDOWER_CACHE_SIZE = 8


class Answerer(Protocol):
    """What the service needs of an engine: QAEngine, or a wrapper such as serve.batching.MicroBatcher.

    Optional attributes read when present: `backend.name` (or `backend_name`) and `model_dir`, for the
    "backend" field, the model version and /metrics.
    """

    def answer_many(self, questions: Sequence[str], contexts: Sequence[str], **options) -> list[list[Answer]]:
        """Answers per pair, best first; `options` are qa.params.AnswerOptions fields."""


class QAEngine:
    def __init__(
        self,
        backend: Backend,
        windower: Windower,
        params: InferenceParams | None = None,
        batch_size: int = 16,
        model_dir: Path | None = None,
        max_positions: int | None = None,
        documents: DocumentCache | None = None,
    ) -> None:
        self.backend = backend
        self.documents = documents  # long contexts' tokens and window indexes, across calls
        self.windower = windower
        self.params = params or InferenceParams()
        self.batch_size = batch_size
        self.model_dir = model_dir
        self.max_positions = max_positions  # the model's position limit: the longest window it reads
        # Read once here: a wrapper put around engine.backend later (a test, a replay) keeps the step.
        self.length_step = getattr(backend, "length_step", 1)
        # Windowers of per-call sizes: a few, least recently used first out (a client cannot grow it).
        self._windowers: OrderedDict[tuple[int, int, int], Windower] = OrderedDict()
        self._windowers_lock = threading.Lock()

    @classmethod
    def from_model_dir(
        cls, model_dir: str | Path, backend: str = "auto", threads: int | None = None, batch_size: int = 16,
        document_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> QAEngine:
        """The engine of a model directory; `document_cache_bytes` bounds the cache of long contexts
        (qa/documents.py; 0: none)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelLoadError(model_dir, "no such directory")
        tokenizer_file = model_dir / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is missing")
        params = load_params(model_dir)
        try:
            windower = Windower.from_file(tokenizer_file, params)
        except Exception as exc:  # noqa: BLE001 - a corrupt tokenizer is a load error
            raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is unreadable: {exc}") from exc
        name = resolve_backend_name(backend, model_dir)
        loaded = load_backend(name, model_dir, threads=threads if threads is not None else default_threads())
        documents = DocumentCache(document_cache_bytes) if document_cache_bytes else None
        return cls(loaded, windower, params, batch_size=batch_size, model_dir=model_dir,
                   max_positions=max_positions(model_dir), documents=documents)

    def resolve(self, options: AnswerOptions) -> InferenceParams:
        """The parameters one call runs with: the model's, with the call's overrides (validated)."""
        return options.resolve(self.params, self.max_positions)

    def windower_for(self, params: InferenceParams) -> Windower:
        """The windower of these window sizes (the model's own unless a call overrides them)."""
        sizes = (params.max_seq_length, params.doc_stride, params.max_query_length)
        if sizes == (self.windower.max_seq_length, self.windower.doc_stride, self.windower.max_query_length):
            return self.windower
        with self._windowers_lock:
            if sizes in self._windowers:
                self._windowers.move_to_end(sizes)
                return self._windowers[sizes]
        windower = self.windower.resized(*sizes)  # outside the lock: a few ms of tokenizer parsing
        with self._windowers_lock:
            self._windowers[sizes] = windower
            while len(self._windowers) > WINDOWER_CACHE_SIZE:
                self._windowers.popitem(last=False)
        return windower

    def windows(
        self, questions: Sequence[str], contexts: Sequence[str | Sequence[str]], params: InferenceParams
    ) -> Windows:
        """The windows the model reads for each pair: all of them, or for a context of more than
        params.max_windows windows the best by BM25 against the question (qa/ranking.py). A context
        may be a list of passages: each is windowed on its own, and the windows of all of them are
        ranked together. With a document cache, a long context is tokenised and indexed once."""
        if len(questions) != len(contexts):
            raise ValueError(f"questions and contexts must have the same length, got {len(questions)} and "
                             f"{len(contexts)}")
        windower = self.windower_for(params)
        texts_of = [passages_of(context) for context in contexts]
        texts = [text for passages in texts_of for text in passages]
        if self.documents is None:
            documents = [Document(tokens, tokens.nbytes) for tokens in windower.encode_contexts(texts)]
        else:
            documents = self.documents.documents(texts, windower.encode_contexts)
        windows = Windows()
        first = 0
        for example, (question, passages) in enumerate(zip(questions, texts_of)):
            own = documents[first : first + len(passages)]
            first += len(passages)
            question_ids = windower.question_ids(question)
            plan = [(passage, start, end) for passage, document in enumerate(own)
                    for start, end in windower.slices(len(question_ids), len(document.tokens))]
            if params.max_windows and len(plan) > params.max_windows:
                index = self._window_index(windower, own, passages, len(question_ids))
                plan = [plan[i] for i in windows_to_read(index.scores(question), params.max_windows)]
            windows.extend(windower.window(example, question_ids, own[passage].tokens, start, end, passage)
                           for passage, start, end in plan)
            windows.readings.append(Reading(len(question_ids), sum(len(d.tokens) for d in own), len(plan)))
        return windows

    def _window_index(
        self, windower: Windower, documents: Sequence[Document], texts: Sequence[str], question_tokens: int
    ) -> WindowIndex:
        """The BM25 index of the windows of one context (kept with its document: the window layout
        depends only on the question's length) or of several passages (built per call from their
        kept words)."""
        layout = ("windows", windower.max_seq_length, windower.doc_stride, question_tokens)
        if len(documents) == 1 and layout in documents[0].extras:  # the hot path: a cached document
            return documents[0].extras[layout]
        words = []
        for document, text in zip(documents, texts):
            found = document.extras.get("words")
            if found is None:
                found = DocumentWords.of(text)
                self._keep(document, "words", found, found.nbytes)
            words.append(found)
        parts = [(w, [d.tokens.span(start, end) for start, end in windower.slices(question_tokens, len(d.tokens))])
                 for w, d in zip(words, documents)]
        index = WindowIndex(parts)
        if len(documents) == 1:
            self._keep(documents[0], layout, index, index.nbytes)
        return index

    def _keep(self, document: Document, name, value, nbytes: int) -> None:
        if self.documents is None:
            document.extras[name] = value
        else:
            self.documents.add_extra(document, name, value, nbytes)

    def window_logits(
        self, windows: Sequence[Window], batch_size: int | None = None, backend: Backend | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start/end logits for each window, batching windows of similar length together.

        `backend` runs the calls instead of self.backend: another session of the same graph with
        other threads (serve.batching's lanes), which gives the same logits."""
        batch_size = batch_size or self.batch_size
        backend = backend or self.backend
        starts: list[np.ndarray] = [np.empty(0)] * len(windows)
        ends: list[np.ndarray] = [np.empty(0)] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for first in range(0, len(order), batch_size):
            chunk = order[first : first + batch_size]
            batch = self.windower.pad([windows[i] for i in chunk], self._batch_length(len(windows[chunk[-1]])))
            start_logits, end_logits = backend(batch.as_inputs(backend.input_names))
            for row, i in enumerate(chunk):
                starts[i], ends[i] = start_logits[row], end_logits[row]
        return starts, ends

    def _batch_length(self, longest: int) -> int:
        """The longest window's length rounded up to the backend's length step, within the model's positions."""
        length = -(-longest // self.length_step) * self.length_step
        return length if self.max_positions is None or length <= self.max_positions else longest

    def decode(
        self,
        contexts: Sequence[str],
        windows: Sequence[Window],
        starts: Sequence[np.ndarray],
        ends: Sequence[np.ndarray],
        options: AnswerOptions,
        params: InferenceParams | None = None,
    ) -> list[list[Answer]]:
        """Answers per context from the logits of all windows (windows carry their example index);
        `params` is self.resolve(options), passed when the caller has it already. Windows from
        self.windows() give each example's answers its Reading."""
        params = params or self.resolve(options)
        null_threshold = params.null_threshold if options.handle_impossible_answer else None
        by_example: list[list[int]] = [[] for _ in contexts]
        for i, window in enumerate(windows):
            by_example[window.example_index].append(i)
        results = [
            decode_example(
                contexts[example],
                [windows[i] for i in idx],
                [starts[i] for i in idx],
                [ends[i] for i in idx],
                n_best=params.n_best,
                max_answer_length=params.max_answer_length,
                top_k=options.top_k,
                null_threshold=null_threshold,
                align_to_words=params.align_to_words,
            )
            for example, idx in enumerate(by_example)
        ]
        readings = getattr(windows, "readings", None)
        if readings and len(readings) == len(results):
            results = [[replace(a, reading=reading) for a in answers] for answers, reading in zip(results, readings)]
        return results

    def answer_many(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        progress: Callable[[int], None] | None = None,
        chunk_size: int = 256,
        batch_size: int | None = None,
        **options,
    ) -> list[list[Answer]]:
        """Answers for each (question, context) pair, best first; [] when the context has no tokens.

        `options` are qa.params.AnswerOptions fields (top_k, max_answer_length, handle_impossible_answer,
        align_to_words, max_seq_length, doc_stride, max_query_length); a bad one is an InvalidParams.
        """
        call = AnswerOptions(**options)
        params = self.resolve(call)
        results: list[list[Answer]] = []
        for first in range(0, len(questions), chunk_size):
            qs = questions[first : first + chunk_size]
            cs = contexts[first : first + chunk_size]
            windows = self.windows(qs, cs, params)
            starts, ends = self.window_logits(windows, batch_size) if windows else ([], [])
            results.extend(self.decode(cs, windows, starts, ends, call, params))
            if progress:
                progress(len(qs))
        return results

    def answer(self, question: str, context: str, **options) -> list[Answer]:
        """answer_many for one pair; `options` are answer_many's (top_k, max_answer_length, ...)."""
        return self.answer_many([question], [context], **options)[0]


def passages_of(context: str | Sequence[str]) -> list[str]:
    """A context's passages: itself, or the list it is."""
    return [context] if isinstance(context, str) else list(context)


def max_positions(model_dir: Path) -> int | None:
    """max_position_embeddings of DIR/config.json (BERT and DistilBERT name it so); None if absent."""
    try:
        value = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None
