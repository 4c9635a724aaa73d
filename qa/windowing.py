"""Question + context -> overlapping token windows with character offsets.

This is the only windowing implementation in the project: training features, evaluation
and the HTTP service all call it, so the gate measures exactly what is served. It needs
only the `tokenizers` library (no torch, no transformers), so the runtime image stays small.
"""

from __future__ import annotations

import pickle
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

    @property
    def context_mask(self) -> np.ndarray:
        return self.offsets[:, 0] >= 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


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
        # Private copies: truncation/padding settings are mutable tokenizer state. The single tokenizer
        # encodes a question or a context on its own; the pair tokenizer's post-processor joins them
        # into windows with the model's special tokens and token types.
        self._single_tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._single_tokenizer.no_padding()
        self._single_tokenizer.no_truncation()
        self._pair_tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._pair_tokenizer.no_padding()
        self._pair_tokenizer.no_truncation()
        self._special_tokens = self._pair_tokenizer.num_special_tokens_to_add(True)
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
        encoding = self._single_tokenizer.encode(question, add_special_tokens=False)
        if len(encoding.ids) <= self.max_query_length:
            return encoding
        clipped = question[: encoding.offsets[self.max_query_length - 1][1]]
        return self._single_tokenizer.encode(clipped, add_special_tokens=False)

    def encode_contexts(self, contexts: Sequence[str]) -> list[Encoding]:
        """Each context's tokens on its own, independent of any question: what a document cache keeps."""
        return self._single_tokenizer.encode_batch(list(contexts), add_special_tokens=False)

    def _window_encodings(self, question: Encoding, context: Encoding, shared: bool) -> list[Encoding]:
        """The question joined to each slice of the context: slices of the room the question leaves,
        overlapping by doc_stride tokens (the tokenizer's own truncation with stride, as in
        `encode(question, context)` with truncation="only_second"). A shared (cached) context
        encoding is copied first, because truncation changes it in place."""
        room = self.max_seq_length - self._special_tokens - len(question.ids)
        if len(context.ids) > room:
            if shared:
                context = pickle.loads(pickle.dumps(context))
            context.truncate(room, stride=self.doc_stride, direction="right")
        # One post-process per slice: on the whole overflow chain the tokenizer gives later slices the
        # first sequence's token types.
        return [self._pair_tokenizer.post_process(question, part) for part in [context, *context.overflowing]]

    def windows(
        self, questions: Sequence[str], contexts: Sequence[str], encoded_contexts: Sequence[Encoding] | None = None
    ) -> list[Window]:
        """All windows of all examples, in example order. `encoded_contexts` (from encode_contexts,
        e.g. a document cache's) saves tokenising the contexts again; they are not changed."""
        if len(questions) != len(contexts):
            raise ValueError("questions and contexts must have the same length")
        shared = encoded_contexts is not None
        if encoded_contexts is None:
            encoded_contexts = self.encode_contexts(contexts)
        elif len(encoded_contexts) != len(contexts):
            raise ValueError("encoded_contexts and contexts must have the same length")
        windows: list[Window] = []
        for example_index, (question, context) in enumerate(zip(questions, encoded_contexts)):
            for part in self._window_encodings(self._encode_question(question), context, shared):
                offsets = np.asarray(part.offsets, dtype=np.int64).reshape(-1, 2)
                is_context = np.asarray([s == 1 for s in part.sequence_ids], dtype=bool)
                offsets[~is_context] = -1
                words = np.asarray([-1 if w is None else w for w in part.word_ids], dtype=np.int64)
                words[~is_context] = -1
                windows.append(
                    Window(
                        example_index=example_index,
                        input_ids=np.asarray(part.ids, dtype=np.int64),
                        token_type_ids=np.asarray(part.type_ids, dtype=np.int64),
                        offsets=offsets,
                        word_spans=word_spans(offsets, words),
                    )
                )
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
