"""Span decoding: start/end logits of an example's windows -> ranked answer spans.

The only span decoder in the project, shared by evaluation and the HTTP service. It follows
the SQuAD post-processing of Hugging Face's utils_qa: the n-best start and end tokens of each
window are paired, spans that leave the context, run backwards or exceed `max_answer_length`
tokens are dropped, candidates from all windows are ranked by start + end logit, and the score
is the softmax of that sum over the kept candidates.

Abstention (SQuAD 2.0 style, off unless a threshold is given): the null score is the [CLS]
start + end logit, the minimum over the example's windows as in utils_qa; the example gets the
empty answer when the null score beats the best span by more than the threshold. The null
candidate then joins the softmax, so the empty answer's score is p(no answer).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.params import DEFAULT_MAX_ANSWER_LENGTH, DEFAULT_N_BEST
from qa.windowing import Reading, Window

CLS_INDEX = 0  # BERT and DistilBERT windows start with [CLS], the "no answer" position


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offsets into the context (or its passage): context[start:end] == text
    end: int
    score: float  # probability among the n-best candidates, 0..1
    logit: float  # start logit + end logit, the ranking key
    passage: int | None = None  # for a context given as passages: the one the answer is in (None: abstained)
    # What the model read for the question, when the engine windowed it; not part of the API's answer.
    reading: Reading | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end}

    def passage_json(self, passage_ids: Sequence) -> dict | None:
        """{"index", "id"?} of the passage the answer is in, given the passages' ids (None where not
        given); None for an abstention."""
        if self.passage is None:
            return None
        passage_id = passage_ids[self.passage]
        return {"index": self.passage, **({"id": passage_id} if passage_id is not None else {})}


def window_candidates(
    window: Window,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = DEFAULT_N_BEST,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    align_to_words: bool = False,
) -> list[tuple[float, int, int]]:
    """(logit, start_char, end_char) for the valid spans among one window's n-best tokens; with
    `align_to_words` the characters widen to whole words, as the Hugging Face pipeline does."""
    n = len(window)
    start_logits = np.asarray(start_logits[:n], dtype=np.float64)
    end_logits = np.asarray(end_logits[:n], dtype=np.float64)
    in_context = window.context_mask
    if not in_context.any():
        return []
    masked_start = np.where(in_context, start_logits, -np.inf)
    masked_end = np.where(in_context, end_logits, -np.inf)
    k = min(n_best, int(in_context.sum()))
    start_idx = np.argsort(-masked_start, kind="stable")[:k]
    end_idx = np.argsort(-masked_end, kind="stable")[:k]
    s = start_idx[:, None]
    e = end_idx[None, :]
    valid = (e >= s) & (e - s + 1 <= max_answer_length)
    rows, cols = np.nonzero(valid)
    chars = window.word_spans if align_to_words and window.word_spans is not None else window.offsets
    candidates = []
    for r, c in zip(rows, cols):
        si, ei = int(start_idx[r]), int(end_idx[c])
        logit = float(start_logits[si] + end_logits[ei])
        candidates.append((logit, int(chars[si, 0]), int(chars[ei, 1])))
    return candidates


def null_logit(windows: Sequence[Window], start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray]):
    """The example's no-answer score: [CLS] start + end logit, the minimum over its windows; None without windows."""
    scores = [float(s[CLS_INDEX]) + float(e[CLS_INDEX]) for _, s, e in zip(windows, start_logits, end_logits)]
    return min(scores) if scores else None


def rank_answers(
    context: str | Sequence[str],
    candidates: Iterable[tuple[float, int, int] | tuple[float, int, int, int]],
    n_best: int = DEFAULT_N_BEST,
    top_k: int = 1,
    null: float | None = None,
    null_threshold: float | None = None,
) -> list[Answer]:
    """The `top_k` best answers with distinct text, scored by softmax over the n-best spans.

    `context` may be a list of passages; each candidate then names its passage as a fourth item, the
    spans of all passages compete in one ranking, and each answer says which passage it is in.

    With `null_threshold` set and a `null` logit, the null candidate joins the softmax and the
    empty answer (start = end = 0, score p(no answer)) comes first when null - best span logit
    > null_threshold (a tie keeps the span), or when no span is valid.
    """
    best = sorted(candidates, key=lambda c: c[0], reverse=True)[:n_best]
    can_abstain = null_threshold is not None and null is not None
    if not best and not can_abstain:
        return []
    logits = np.asarray([c[0] for c in best] + ([null] if can_abstain else []))
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    answers: list[Answer] = []
    if can_abstain and (not best or null - best[0][0] > null_threshold):
        answers.append(Answer(text="", start=0, end=0, score=float(probs[-1]), logit=null))
        if len(answers) == top_k:
            return answers
    passages = None if isinstance(context, str) else context
    seen: set[str] = set()
    for (logit, start, end, *where), prob in zip(best, probs):
        passage = where[0] if passages is not None else None
        text_of = passages[passage] if passages is not None else context
        end = _past_combining_marks(text_of, end)
        text = text_of[start:end]
        if text in seen:
            continue
        seen.add(text)
        answers.append(Answer(text=text, start=start, end=end, score=float(prob), logit=logit, passage=passage))
        if len(answers) == top_k:
            break
    return answers


def _past_combining_marks(context: str, end: int) -> int:
    """Extend an end offset over combining marks: BERT-style normalizers strip accents, so a
    decomposed "e" + U+0301 is one token whose offsets end before the accent; without this the
    answer would cut the character in two ("cafe" out of "café")."""
    while end < len(context) and unicodedata.category(context[end]) in ("Mn", "Me"):
        end += 1
    return end


def decode_example(
    context: str | Sequence[str],
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best: int = DEFAULT_N_BEST,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    top_k: int = 1,
    null_threshold: float | None = None,
    align_to_words: bool = False,
) -> list[Answer]:
    """Best answers for one example from the logits of all its windows (see the module doc for
    `null_threshold`, the abstention threshold in logits; None never abstains). For a context given
    as a list of passages, windows name their passage and answers say which passage they are in."""
    candidates: list[tuple] = []
    for window, s, e in zip(windows, start_logits, end_logits):
        found = window_candidates(window, s, e, n_best, max_answer_length, align_to_words)
        candidates.extend(found if isinstance(context, str) else [(*c, window.passage) for c in found])
    null = null_logit(windows, start_logits, end_logits) if null_threshold is not None else None
    return rank_answers(context, candidates, n_best=n_best, top_k=top_k, null=null, null_threshold=null_threshold)
