"""Window pre-ranking: read only the windows of a long context that can hold the answer.

A context longer than `max_windows` windows has its windows' text scored against the question
with BM25 (bm25s, Lucene's variant: its IDF stays positive on a corpus as small as one
document's windows, where rank_bm25's Okapi IDF goes to zero or below), and only the best are
read by the model. A context of at most `max_windows` windows is read whole, so paragraphs get
exactly the answers they got before pre-ranking existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np

from qa.windowing import Window

# Windows scoring at least this share of the k-th best window's score are read too: when BM25
# cannot separate them, leaving one out is a guess.
NEAR_TIE = 0.9
# ... but never more than this many times max_windows.
MOST_EXTRA_FACTOR = 2


def window_text(window: Window, context: str) -> str:
    """The context characters a window covers."""
    spans = window.offsets[window.context_mask]
    return context[int(spans[0, 0]) : int(spans[-1, 1])] if len(spans) else ""


def bm25_scores(question: str, texts: Sequence[str]) -> np.ndarray:
    """BM25 (Lucene) score of each text against the question; English stopwords dropped."""
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    if not corpus.vocab:  # no word in any text (digits or punctuation only): nothing to rank by
        return np.zeros(len(texts))
    retriever = bm25s.BM25(method="lucene")
    retriever.index(corpus, show_progress=False)
    query = bm25s.tokenize([question], stopwords="en", show_progress=False, return_ids=False)[0]
    known = [term for term in query if term in corpus.vocab]
    return np.asarray(retriever.get_scores(known), dtype=np.float64) if known else np.zeros(len(texts))


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
