"""Window pre-ranking: BM25 over a context's windows, and which windows the model reads."""

import numpy as np
import pytest

from qa.engine import QAEngine
from qa.ranking import DocumentWords, WindowIndex, windows_to_read

FILLER = "The committee met again and the weather stayed mild while the town went about its business. "


def test_document_words_are_bm25s_words_with_their_offsets():
    text = "The Bridge opened in 1894; the bridge is Roman."
    words = DocumentWords.of(text)
    found = [(int(start), word) for start, word in zip(words.starts, [list(words.vocab)[i] for i in words.ids])]
    assert found == [(4, "bridge"), (11, "opened"), (21, "1894"), (31, "bridge"), (41, "roman")]
    assert words.between(0, 20).tolist() == [words.vocab["bridge"], words.vocab["opened"]]
    assert words.between(30, 47).tolist() == [words.vocab["bridge"], words.vocab["roman"]]


def test_the_window_holding_the_questions_rare_words_ranks_first():
    texts = [FILLER * 3, FILLER * 2 + "The lighthouse keeper was Ada Blackwood. " + FILLER, FILLER * 3]
    context = "".join(texts)
    spans, position = [], 0
    for text in texts:
        spans.append((position, position + len(text)))
        position += len(text)
    scores = WindowIndex([(DocumentWords.of(context), spans)]).scores("Who was the lighthouse keeper?")
    assert int(np.argmax(scores)) == 1
    assert scores[1] > 0 and scores[0] == scores[2] == 0


@pytest.mark.parametrize("question, context", [("Who?", "1 2 3 , ."), ("zebra crossing", "alpha beta gamma")])
def test_no_shared_word_scores_every_window_zero(question, context):
    assert WindowIndex([(DocumentWords.of(context), [(0, 3), (3, len(context))])]).scores(question).tolist() == [0, 0]


def test_windows_to_read_takes_the_best_in_document_order_and_ties_up_to_twice_k():
    assert windows_to_read(np.array([1.0, 5.0, 0.0, 3.0, 0.5]), 2) == [1, 3]
    # A window tied with the 2nd best is read too; one just below it is not.
    assert windows_to_read(np.array([1.0, 5.0, 3.0, 3.0, 2.0]), 2) == [1, 2, 3]
    assert windows_to_read(np.array([1.0, 5.0, 2.99, 3.0, 2.0]), 2) == [1, 3]
    # Ties everywhere: at most 2 x k.
    assert windows_to_read(np.ones(10), 2) == [0, 1, 2, 3]
    # Nothing to rank by: the first k, which is what reading in order would start with.
    assert windows_to_read(np.zeros(6), 3) == [0, 1, 2]
    assert windows_to_read(np.array([1.0, 2.0]), 4) == [0, 1]


@pytest.fixture(scope="module")
def engine(tiny_bert_dir):
    return QAEngine.from_model_dir(tiny_bert_dir, backend="torch")


def test_a_long_context_reads_only_its_best_windows_and_the_one_with_the_answer(engine):
    context = FILLER * 100 + "The lighthouse keeper was Ada Blackwood. " + FILLER * 100
    question = "Who was the lighthouse keeper?"
    every = engine.windows([question], [context], engine.resolve(engine_options(0)))
    read = engine.windows([question], [context], engine.resolve(engine_options(2)))
    assert len(every) > 8
    assert 2 <= len(read) <= 4
    answer_at = context.index("Ada Blackwood")
    assert any(w.offsets[w.context_mask][0, 0] <= answer_at < w.offsets[w.context_mask][-1, 1] for w in read)


def test_a_context_of_at_most_k_windows_gets_exactly_the_answers_of_reading_everything(engine):
    context = FILLER * 20 + "The lighthouse keeper was Ada Blackwood. " + FILLER * 20
    question = "Who was the lighthouse keeper?"
    windows = engine.windows([question], [context], engine.resolve(engine_options(0)))
    assert 1 < len(windows) <= 4
    assert engine.answer(question, context, max_windows=4, top_k=3) == engine.answer(question, context, top_k=3)


def engine_options(max_windows):
    from qa.params import AnswerOptions

    return AnswerOptions(max_windows=max_windows)
