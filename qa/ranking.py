"""Window pre-ranking: read only the windows of a long context that can hold the answer.

A context longer than `max_windows` windows has its windows' text scored against the question
with BM25 (bm25s, Lucene's variant: its IDF stays positive on a corpus as small as one
document's windows, where rank_bm25's Okapi IDF goes to zero or below), and only the best are
read by the model. A context of at most `max_windows` windows is read whole, so paragraphs get
exactly the answers they got before pre-ranking existed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN
from bm25s.tokenization import Tokenized

# Windows scoring at least this share of the k-th best window's score are read too: when BM25 cannot
# separate them, leaving one out is a guess. Only exact ties: on the held-out train articles, reading
# windows within 90 % of the k-th too read 28 % more windows for 0.4 F1 less at k = 3 (bench/README.md).
NEAR_TIE = 1.0
# ... but never more than this many times max_windows.
MOST_EXTRA_FACTOR = 2
# bm25s's own word pattern (scikit-learn's CountVectorizer's), lower-cased, English stopwords dropped.
WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")
STOPWORDS = frozenset(STOPWORDS_EN)


def bm25_words(text: str) -> list[tuple[int, str]]:
    """(character offset, word) of each word BM25 counts in the text."""
    words = ((match.start(), match.group().lower()) for match in WORD_PATTERN.finditer(text))
    return [(start, word) for start, word in words if word not in STOPWORDS]


def vocab_nbytes(vocab: dict[str, int]) -> int:
    """About what a word -> id dict holds: its table entry, the str and the int objects."""
    return sum(130 + len(word) for word in vocab)


@dataclass(frozen=True)
class DocumentWords:
    """A context's BM25 words once, with where each starts: any window's words are a slice of them, so
    windows of every question length are indexed without reading the text again."""

    starts: np.ndarray  # int64 character offset of each word
    ids: np.ndarray  # int64 index of each word in vocab
    vocab: dict[str, int]

    @classmethod
    def of(cls, text: str) -> DocumentWords:
        vocab: dict[str, int] = {}
        found = bm25_words(text)
        ids = [vocab.setdefault(word, len(vocab)) for _, word in found]
        return cls(np.asarray([start for start, _ in found], dtype=np.int64), np.asarray(ids, dtype=np.int64), vocab)

    @property
    def nbytes(self) -> int:
        return self.starts.nbytes + self.ids.nbytes + vocab_nbytes(self.vocab)

    def between(self, start: int, end: int) -> np.ndarray:
        """The ids of the words that start within characters [start, end)."""
        first, last = np.searchsorted(self.starts, (start, end))
        return self.ids[first:last]


class WindowIndex:
    """BM25 (bm25s, Lucene) over windows given as character spans of one context or of several
    passages: `parts` pairs each context's words with its windows' spans, and the windows are
    numbered in that order."""

    def __init__(self, parts: Sequence[tuple[DocumentWords, Sequence[tuple[int, int]]]]) -> None:
        self.size = sum(len(spans) for _, spans in parts)
        vocab: dict[str, int] = {}
        windows: list[list[int]] = []
        for words, spans in parts:
            # This context's word ids in the shared vocabulary (a dict's order is its ids' order).
            shared_ids = np.asarray([vocab.setdefault(word, len(vocab)) for word in words.vocab], dtype=np.int64)
            windows.extend(shared_ids[words.between(start, end)].tolist() for start, end in spans)
        self.retriever: bm25s.BM25 | None = None
        if vocab:  # no word in any context (digits or punctuation only): nothing to rank by
            self.retriever = bm25s.BM25(method="lucene")
            self.retriever.index(Tokenized(ids=windows, vocab=vocab), show_progress=False)

    @property
    def nbytes(self) -> int:
        if self.retriever is None:
            return 0
        arrays = sum(v.nbytes for v in self.retriever.scores.values() if isinstance(v, np.ndarray))
        # bm25s keeps the vocabulary (a dict) and the set of its ids.
        return arrays + vocab_nbytes(self.retriever.vocab_dict) + 64 * len(self.retriever.vocab_dict)

    def scores(self, question: str) -> np.ndarray:
        """Each window's BM25 score against the question; zeros when they share no word."""
        if self.retriever is None:
            return np.zeros(self.size)
        known = [word for _, word in bm25_words(question) if word in self.retriever.vocab_dict]
        if not known:
            return np.zeros(self.size)
        return np.asarray(self.retriever.get_scores(known), dtype=np.float64)


def windows_to_read(scores: np.ndarray, max_windows: int) -> list[int]:
    """Indices (in document order) of the windows to read: the best max_windows by score, plus those
    within NEAR_TIE of the k-th best, up to MOST_EXTRA_FACTOR x max_windows in all."""
    if len(scores) <= max_windows:
        return list(range(len(scores)))
    order = np.argsort(-scores, kind="stable")
    kth = scores[order[max_windows - 1]]
    chosen = list(order[:max_windows])
    if kth > 0:
        for index in order[max_windows : MOST_EXTRA_FACTOR * max_windows]:
            if scores[index] < NEAR_TIE * kth:
                break
            chosen.append(index)
    return sorted(int(i) for i in chosen)
