"""Question + context -> overlapping token windows with character offsets.

This is the only windowing implementation in the project: training features, evaluation
and the HTTP service all call it, so the gate measures exactly what is served. It needs
only the `tokenizers` library (no torch, no transformers), so the runtime image stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from qa.params import (
    DEFAULT_DOC_STRIDE,
    DEFAULT_MAX_QUERY_LENGTH,
    DEFAULT_MAX_SEQ_LENGTH,
    InferenceParams,
    window_room_problem,
)


@dataclass(frozen=True)
class Window:
    """One model input: the question and a slice of the context."""

    example_index: int
    input_ids: np.ndarray  # int64 [seq]
    token_type_ids: np.ndarray  # int64 [seq]
    # Character span in the context of each token; (-1, -1) for question and special tokens.
    offsets: np.ndarray  # int64 [seq, 2]
    # Character span of the whole word (as the tokenizer's pre-tokenizer splits words) that each
    # context token belongs to, within this window; (-1, -1) elsewhere. For align_to_words.
    word_spans: np.ndarray | None = None
    # Which of the example's passages the context tokens come from (0 for an example of one context).
    passage: int = 0

    @property
    def context_mask(self) -> np.ndarray:
        return self.offsets[:, 0] >= 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class Reading:
    """What the model read for one question (for monitoring: serve/metrics.py); qa.engine fills it in."""

    question_tokens: int  # after truncation to max_query_length
    context_tokens: int  # all of the context's (or its passages') tokens
    windows: int  # windows read, after pre-ranking


class Windows(list):
    """The windows of one call, in example order, with what was read for each example."""

    def __init__(self, windows: Sequence[Window] = (), readings: Sequence[Reading] = ()) -> None:
        super().__init__(windows)
        self.readings = list(readings)


@dataclass(frozen=True)
class ContextTokens:
    """A context's tokens on their own, independent of any question (what a document cache keeps)."""

    ids: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [n, 2], character spans in the context
    words: np.ndarray  # int64 [n], the pre-tokenizer's word index; -1 for none

    @classmethod
    def of(cls, encoding: Encoding) -> ContextTokens:
        return cls(
            np.asarray(encoding.ids, dtype=np.int64),
            np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2),
            np.asarray([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.offsets.nbytes + self.words.nbytes

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The characters tokens [start, end) cover; (0, 0) for none."""
        return (int(self.offsets[start, 0]), int(self.offsets[end - 1, 1])) if end > start else (0, 0)


QUESTION, CONTEXT = 0, 1  # sequence ids, as the tokenizer numbers a pair's sequences


@dataclass(frozen=True)
class PairTemplate:
    """Where the model's special tokens go around a question and a context, and each part's token
    type: read once off the tokenizer's own post-processor ([CLS] q [SEP] c [SEP] for BERT,
    <s> q </s></s> c </s> for RoBERTa), then applied to any window with numpy."""

    parts: tuple[tuple[int | None, int | None, int], ...]  # (sequence id or None, special token id, type id)

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> PairTemplate:
        probes = [tokenizer.encode(text, add_special_tokens=False) for text in ("question", "context")]
        joined = tokenizer.post_process(probes[0], probes[1], add_special_tokens=True)
        parts: list[tuple[int | None, int | None, int]] = []
        rows = zip(joined.ids, joined.type_ids, joined.sequence_ids, joined.special_tokens_mask)
        for token_id, type_id, sequence_id, special in rows:
            # The pair's second sequence is numbered 1; the first is left unnumbered by post_process.
            sequence = None if special else CONTEXT if sequence_id == CONTEXT else QUESTION
            if sequence is None:
                parts.append((None, token_id, type_id))
            elif not parts or parts[-1][0] != sequence:
                parts.append((sequence, None, type_id))
        if sorted(p[0] for p in parts if p[0] is not None) != [QUESTION, CONTEXT]:
            raise ValueError(f"the tokenizer's post-processor joins a pair as {joined.tokens}; expected the "
                             "question and the context once each")
        return cls(tuple(parts))

    @property
    def special_tokens(self) -> int:
        return sum(1 for sequence, _, _ in self.parts if sequence is None)

    def join(self, question_ids: np.ndarray, context_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input_ids, token_type_ids, is_context) of one window."""
        ids, types, is_context = [], [], []
        for sequence, token_id, type_id in self.parts:
            piece = [token_id] if sequence is None else question_ids if sequence == QUESTION else context_ids
            ids.append(np.asarray(piece, dtype=np.int64))
            types.append(np.full(len(piece), type_id, dtype=np.int64))
            is_context.append(np.full(len(piece), sequence == CONTEXT, dtype=bool))
        return np.concatenate(ids), np.concatenate(types), np.concatenate(is_context)


@dataclass(frozen=True)
class PaddedBatch:
    input_ids: np.ndarray  # int64 [batch, seq]
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def as_inputs(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in names}


class Windower:
    """Splits (question, context) pairs into windows of at most `max_seq_length` tokens.

    Windows overlap by `doc_stride` tokens (the Hugging Face meaning of doc_stride). The
    question comes first and is never truncated by the window logic; questions longer than
    `max_query_length` tokens are cut to that length first, so a window always holds context.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        doc_stride: int = DEFAULT_DOC_STRIDE,
        max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    ) -> None:
        problem = window_room_problem(max_seq_length, doc_stride, max_query_length)
        if problem:
            raise ValueError(problem)
        self.max_seq_length = max_seq_length
        self.doc_stride = doc_stride
        self.max_query_length = max_query_length
        # A private copy: truncation/padding settings are mutable tokenizer state. It encodes a question
        # or a context on its own; its post-processor shows where the special tokens go in a window.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._template = PairTemplate.of(self._tokenizer)
        self.pad_id = _pad_token_id(tokenizer)
        self._tokenizer_json = tokenizer.to_str()

    def resized(self, max_seq_length: int, doc_stride: int, max_query_length: int) -> Windower:
        """The same tokenizer with other window sizes (per-request doc_stride, max_seq_len, ...)."""
        return Windower(Tokenizer.from_str(self._tokenizer_json), max_seq_length, doc_stride, max_query_length)

    @classmethod
    def from_params(cls, tokenizer: Tokenizer, params: InferenceParams) -> Windower:
        return cls(tokenizer, params.max_seq_length, params.doc_stride, params.max_query_length)

    @classmethod
    def from_file(cls, tokenizer_json: str | Path, params: InferenceParams | None = None) -> Windower:
        return cls.from_params(Tokenizer.from_file(str(tokenizer_json)), params or InferenceParams())

    def _encode_question(self, question: str) -> Encoding:
        """The question's tokens, cut to max_query_length tokens; leading spaces waste window room
        (as in HF run_qa)."""
        question = question.lstrip()
        encoding = self._tokenizer.encode(question, add_special_tokens=False)
        if len(encoding.ids) <= self.max_query_length:
            return encoding
        clipped = question[: encoding.offsets[self.max_query_length - 1][1]]
        return self._tokenizer.encode(clipped, add_special_tokens=False)

    def question_ids(self, question: str) -> np.ndarray:
        return np.asarray(self._encode_question(question).ids, dtype=np.int64)

    def encode_contexts(self, contexts: Sequence[str]) -> list[ContextTokens]:
        """Each context's tokens on their own, independent of any question: what a document cache keeps."""
        encodings = self._tokenizer.encode_batch(list(contexts), add_special_tokens=False)
        return [ContextTokens.of(encoding) for encoding in encodings]

    def slices(self, question_tokens: int, context_tokens: int) -> list[tuple[int, int]]:
        """The context token ranges [start, end) of the windows for a question of this many tokens:
        slices of the room the question leaves, each doc_stride tokens into the previous one, as the
        tokenizer's truncation with stride cuts them (`encode(question, context)` with
        truncation="only_second" and overflowing tokens, as Hugging Face's run_qa asks for)."""
        room = self.max_seq_length - self._template.special_tokens - question_tokens
        if context_tokens <= room:
            return [(0, context_tokens)]
        ranges = []
        for start in range(0, context_tokens, room - self.doc_stride):
            ranges.append((start, min(start + room, context_tokens)))
            if ranges[-1][1] == context_tokens:
                break
        return ranges

    def window(
        self, example_index: int, question_ids: np.ndarray, context: ContextTokens, start: int, end: int,
        passage: int = 0,
    ) -> Window:
        """The question joined to context tokens [start, end) with the model's special tokens."""
        ids, type_ids, is_context = self._template.join(question_ids, context.ids[start:end])
        offsets = np.full((len(ids), 2), -1, dtype=np.int64)
        offsets[is_context] = context.offsets[start:end]
        words = np.full(len(ids), -1, dtype=np.int64)
        words[is_context] = context.words[start:end]
        return Window(example_index, ids, type_ids, offsets, word_spans(offsets, words), passage)

    def windows(
        self, questions: Sequence[str], contexts: Sequence[str], encoded_contexts: Sequence[ContextTokens] | None = None
    ) -> list[Window]:
        """All windows of all examples, in example order. `encoded_contexts` (from encode_contexts,
        e.g. a document cache's) saves tokenising the contexts again."""
        if len(questions) != len(contexts):
            raise ValueError("questions and contexts must have the same length")
        if encoded_contexts is None:
            encoded_contexts = self.encode_contexts(contexts)
        elif len(encoded_contexts) != len(contexts):
            raise ValueError("encoded_contexts and contexts must have the same length")
        windows: list[Window] = []
        for example_index, (question, context) in enumerate(zip(questions, encoded_contexts)):
            question_ids = self.question_ids(question)
            for start, end in self.slices(len(question_ids), len(context)):
                windows.append(self.window(example_index, question_ids, context, start, end))
        return windows

    def pad(self, windows: Sequence[Window], length: int | None = None) -> PaddedBatch:
        """Right-pad windows to the longest one (or to `length`)."""
        length = length or max(len(w) for w in windows)
        input_ids = np.full((len(windows), length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(windows), length), dtype=np.int64)
        token_type_ids = np.zeros((len(windows), length), dtype=np.int64)
        for row, window in enumerate(windows):
            n = len(window)
            input_ids[row, :n] = window.input_ids
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = window.token_type_ids
        return PaddedBatch(input_ids, attention_mask, token_type_ids)


def word_spans(offsets: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Per token, the character span of its word: a word is a run of tokens with the same word id
    (-1: not a context token, whose span stays (-1, -1))."""
    spans = np.full_like(offsets, -1)
    n = len(words)
    if n == 0:
        return spans
    run_begins = np.ones(n, dtype=bool)
    run_begins[1:] = words[1:] != words[:-1]
    run_of = np.cumsum(run_begins) - 1
    firsts = np.flatnonzero(run_begins)
    lasts = np.append(firsts[1:] - 1, n - 1)
    spans[:, 0] = offsets[firsts, 0][run_of]
    spans[:, 1] = offsets[lasts, 1][run_of]
    spans[words < 0] = -1
    return spans


def _pad_token_id(tokenizer: Tokenizer) -> int:
    if tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    for token in ("[PAD]", "<pad>", "<|pad|>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
