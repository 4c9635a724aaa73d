"""A context given as a list of passages: windowed one by one, ranked and abstained over together."""

import numpy as np
import pytest

from qa.engine import QAEngine
from qa.params import AnswerOptions

FILLER = "The committee met again and the weather stayed mild while the town went about its business. "
PASSAGES = [
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Harbor Point lighthouse was kept by Ada Blackwood for forty years.",
    "Rye bread is sold every morning by the bakery on Elm Street.",
]


@pytest.fixture(scope="module")
def engine(tiny_bert_dir):
    return QAEngine.from_model_dir(tiny_bert_dir, backend="torch")


def test_answers_name_their_passage_and_offsets_are_inside_it(engine):
    answers = engine.answer("Who kept the lighthouse?", PASSAGES, top_k=10)
    assert answers and {a.passage for a in answers} <= {0, 1, 2}
    for a in answers:
        assert PASSAGES[a.passage][a.start : a.end] == a.text
    single = engine.answer("Who kept the lighthouse?", PASSAGES[1], top_k=3)
    assert all(a.passage is None for a in single)  # one context: no passage to name


def test_one_passage_in_a_list_answers_as_the_context_itself(engine):
    as_list = engine.answer("Who kept the lighthouse?", [PASSAGES[1]], top_k=3)
    alone = engine.answer("Who kept the lighthouse?", PASSAGES[1], top_k=3)
    assert [(a.text, a.start, a.end, a.score) for a in as_list] == [(a.text, a.start, a.end, a.score) for a in alone]
    assert {a.passage for a in as_list} == {0}


def test_every_passage_is_windowed_on_its_own(engine):
    windows = engine.windows(["Who kept it?"], [PASSAGES], engine.resolve(AnswerOptions()))
    assert [w.passage for w in windows] == [0, 1, 2]
    for window in windows:
        spans = window.offsets[window.context_mask]
        assert spans[-1, 1] <= len(PASSAGES[window.passage])


def test_pre_ranking_reads_the_best_windows_across_all_passages(engine):
    passages = [FILLER * 30, FILLER * 30 + "The lighthouse keeper was Ada Blackwood. " + FILLER * 30, FILLER * 30]
    every = engine.windows(["Who was the lighthouse keeper?"], [passages], engine.resolve(AnswerOptions(max_windows=0)))
    read = engine.windows(["Who was the lighthouse keeper?"], [passages], engine.resolve(AnswerOptions(max_windows=1)))
    assert len(every) > 6 and len(read) <= 2
    holder = passages[1].index("Ada Blackwood")
    assert any(w.passage == 1 and w.offsets[w.context_mask][0, 0] <= holder < w.offsets[w.context_mask][-1, 1]
               for w in read)


def test_abstention_weighs_the_null_score_of_every_passage(engine):
    windows = engine.windows(["Who kept it?"], [PASSAGES], engine.resolve(AnswerOptions()))
    # Logits that favour a span in passage 0 and "no answer" strongly in every window.
    starts = [np.full(len(w), -5.0) for w in windows]
    ends = [np.full(len(w), -5.0) for w in windows]
    for s, e in zip(starts, ends):
        s[0] = e[0] = 5.0
    first = np.flatnonzero(windows[0].context_mask)[0]
    starts[0][first] = ends[0][first] = 4.0
    [abstained] = engine.decode([PASSAGES], windows, starts, ends, AnswerOptions(handle_impossible_answer=True))
    assert abstained[0].text == "" and abstained[0].passage is None
    # One window whose null score is low: the minimum over all passages' windows decides.
    starts[2][0] = ends[2][0] = -5.0
    [answered] = engine.decode([PASSAGES], windows, starts, ends, AnswerOptions(handle_impossible_answer=True))
    assert answered[0].passage == 0 and answered[0].text == PASSAGES[0][answered[0].start : answered[0].end]


def test_the_document_cache_keeps_each_long_passage(tiny_bert_dir):
    engine = QAEngine.from_model_dir(tiny_bert_dir, backend="torch", document_cache_bytes=4 * 2**20)
    passages = [FILLER * 30, "short one", FILLER * 31]
    engine.answer("Who was the keeper?", passages, max_windows=2)
    engine.answer("Who kept the light?", passages, max_windows=2)
    assert (engine.documents.misses, engine.documents.hits, len(engine.documents)) == (2, 2, 2)
