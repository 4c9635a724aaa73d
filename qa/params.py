"""How a model reads and answers: the one inference-parameter type.

Training configs (`preprocessing:`), the model directory's qa.json, the Python API and the
HTTP service all use `InferenceParams`, so a parameter has one name, one default and one rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

DEFAULT_MAX_SEQ_LENGTH = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_QUERY_LENGTH = 64
DEFAULT_N_BEST = 20
DEFAULT_MAX_ANSWER_LENGTH = 30
# Abstain when the null score ([CLS]) beats the best span by more than this many logits. 0.0 until
# `make calibrate` sets the model's own value in its qa.json.
DEFAULT_NULL_THRESHOLD = 0.0
# Windows of one context the model reads; a longer context is pre-ranked (qa/ranking.py). 0: all.
# 3, chosen on the held-out train articles asked whole (bench/README.md): F1 59.46 against 58.82 for 2
# and 59.05 for 3 with near ties; no SQuAD dev paragraph has more than 3 windows, so every paragraph is
# read whole, as before pre-ranking.
DEFAULT_MAX_WINDOWS = 3
# An answer whose score (its probability among the n-best candidates) is below this counts as low
# confidence in the service's metrics; it changes no answer. 0.25: the highest of 0.1, 0.2, ... at
# which the answers below it are right less than half the time, on the held-out train articles
# (shipped model, 2,359 questions: 9.2 % of answers below 0.25, F1 48.1 there against 80.7 above).
DEFAULT_LOW_CONFIDENCE_SCORE = 0.25
# [CLS] question [SEP] context [SEP] plus one token of slack.
SPECIAL_TOKENS_PER_WINDOW = 4


class InvalidParams(ValueError):
    """A parameter has a value the windowing or decoding cannot use; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def window_room_problem(max_seq_length: int, doc_stride: int, max_query_length: int) -> str | None:
    """Why a window of these sizes would hold no context, or None when it would."""
    if max_query_length + doc_stride + SPECIAL_TOKENS_PER_WINDOW > max_seq_length:
        return (
            f"max_seq_length={max_seq_length} leaves no room for context after "
            f"max_query_length={max_query_length} and doc_stride={doc_stride}"
        )
    return None


@dataclass(frozen=True)
class InferenceParams:
    """Windowing and decoding parameters; saved next to the weights in qa.json."""

    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    """Tokens per window: question, context slice and special tokens."""
    doc_stride: int = DEFAULT_DOC_STRIDE
    """Tokens shared by consecutive windows of a long context (the Hugging Face meaning)."""
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH
    """Questions longer than this many tokens are cut, so every window holds context."""
    n_best: int = DEFAULT_N_BEST
    """Start and end tokens considered per window when pairing spans."""
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH
    """Longest answer, in tokens, unless a request asks for another."""
    null_threshold: float = DEFAULT_NULL_THRESHOLD
    """Logits by which the null score must beat the best span for an abstention (requests that set
    handle_impossible_answer); calibrated on held-out train articles, never on dev."""
    align_to_words: bool = False
    """Widen answers to whole words (the Hugging Face pipeline's align_to_words)."""
    max_windows: int = DEFAULT_MAX_WINDOWS
    """Windows of one context the model reads: a context with more is pre-ranked against the question
    with BM25 and only the best are read (qa/ranking.py); 0 reads every window."""
    low_confidence_score: float = DEFAULT_LOW_CONFIDENCE_SCORE
    """Answers scoring below this are counted as low confidence by the service's metrics (no answer changes)."""

    def validate(self) -> InferenceParams:
        """Raises InvalidParams naming the first bad field; returns self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "null_threshold":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise InvalidParams(f.name, f"must be a finite number, got {value!r}")
            elif f.name == "low_confidence_score":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise InvalidParams(f.name, f"must be a number from 0 to 1, got {value!r}")
            elif f.name == "align_to_words":
                if not isinstance(value, bool):
                    raise InvalidParams(f.name, f"must be true or false, got {value!r}")
            elif f.name == "max_windows":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise InvalidParams(f.name, f"must be 0 (every window) or a positive integer, got {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidParams(f.name, f"must be a positive integer, got {value!r}")
        problem = window_room_problem(self.max_seq_length, self.doc_stride, self.max_query_length)
        if problem:
            raise InvalidParams("doc_stride", problem)
        return self

    @classmethod
    def from_dict(cls, raw: dict) -> InferenceParams:
        """Validated params from a mapping; unknown keys are an InvalidParams too."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidParams(unknown[0], f"unknown field(s): {', '.join(unknown)}")
        return cls(**raw).validate()



@dataclass(frozen=True)
class AnswerOptions:
    """Per-call answer settings; None takes the model's InferenceParams. Each request field that
    changes windowing or decoding is one of these."""

    top_k: int = 1
    """Answers returned, best first, with distinct text."""
    max_answer_length: int | None = None
    """Longest answer in tokens."""
    handle_impossible_answer: bool = False
    """May answer "" (start = end = 0, score p(no answer)) when the null score wins by null_threshold."""
    align_to_words: bool | None = None
    """Widen answers to whole words."""
    max_seq_length: int | None = None
    doc_stride: int | None = None
    max_query_length: int | None = None
    max_windows: int | None = None

    def resolve(self, params: InferenceParams, max_positions: int | None = None) -> InferenceParams:
        """The model's params with these overrides, validated (InvalidParams names the field)."""
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise InvalidParams("top_k", f"must be a positive integer, got {self.top_k!r}")
        if not isinstance(self.handle_impossible_answer, bool):
            value = self.handle_impossible_answer
            raise InvalidParams("handle_impossible_answer", f"must be true or false, got {value!r}")
        overrides = {name: getattr(self, name) for name in WINDOW_AND_SPAN_FIELDS if getattr(self, name) is not None}
        resolved = replace(params, **overrides).validate()
        if max_positions is not None and resolved.max_seq_length > max_positions:
            raise InvalidParams("max_seq_length", f"must be at most the model's {max_positions} positions, "
                                f"got {resolved.max_seq_length}")
        return resolved


# AnswerOptions fields that override InferenceParams fields of the same name.
WINDOW_AND_SPAN_FIELDS = (
    "max_answer_length", "align_to_words", "max_seq_length", "doc_stride", "max_query_length", "max_windows",
)
