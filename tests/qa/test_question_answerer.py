"""QuestionAnswerer: the pipeline's call forms, names, defaults and return shapes, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from qa import QuestionAnswerer
from qa.params import AnswerOptions
from qa.pipeline import InvalidArgument
from qa.windowing import word_spans

CONTEXT = "Marie Curie and Pierre Curie discovered radium and polonium in 1898 in Paris."
QUESTION = "What did they discover?"


@pytest.fixture(scope="module")
def answerer(tiny_bert_dir):
    return QuestionAnswerer.from_model_dir(tiny_bert_dir, backend="torch", threads=1)


def test_one_pair_gives_one_dict_from_the_engine_with_the_pipeline_defaults(answerer):
    got = answerer(question=QUESTION, context=CONTEXT)
    assert set(got) == {"score", "start", "end", "answer"}
    assert CONTEXT[got["start"] : got["end"]] == got["answer"]
    # The pipeline's defaults: answers of at most 15 tokens, aligned to words.
    [expected] = answerer.engine.answer(QUESTION, CONTEXT, max_answer_length=15, align_to_words=True)
    assert (got["answer"], got["start"], got["end"]) == (expected.text, expected.start, expected.end)


def test_return_shapes_follow_the_pipeline(answerer):
    assert isinstance(answerer(question=QUESTION, context=CONTEXT, top_k=3), list)
    assert len(answerer(question=QUESTION, context=CONTEXT, top_k=3)) <= 3
    two = answerer(question=[QUESTION, "Where?"], context=[CONTEXT, CONTEXT])
    assert isinstance(two, list) and all(isinstance(a, dict) for a in two)
    nested = answerer(question=[QUESTION, "Where?"], context=[CONTEXT, CONTEXT], top_k=2)
    assert all(isinstance(a, list) for a in nested)
    assert isinstance(answerer(question=[QUESTION], context=[CONTEXT]), dict)  # the pipeline's quirk
    assert answerer({"question": QUESTION, "context": CONTEXT}) == answerer(question=QUESTION, context=CONTEXT)
    assert answerer([{"question": QUESTION, "context": CONTEXT}] * 2) == two[:1] * 2
    assert answerer(question=QUESTION, context=[CONTEXT, CONTEXT]) == [two[0], two[0]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "top_k: must be a positive integer, got 0"),
        ({"max_answer_len": -1}, "max_answer_len: must be a positive integer"),
        ({"max_seq_len": 100_000}, "max_seq_len: must be at most the model's"),
        ({"doc_stride": 400}, "doc_stride: max_seq_len=384 leaves no room for context"),
        ({"align_to_words": "yes"}, "align_to_words: must be true or false"),
        ({"handle_impossible_answer": 1}, "handle_impossible_answer: must be true or false"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_length": 10}, "unknown argument\\(s\\) max_length"),
    ],
)
def test_bad_arguments_are_value_errors_that_name_them(answerer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        answerer(question=QUESTION, context=CONTEXT, **kwargs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"question": QUESTION}, "question and context are both required"),
        ({"question": [QUESTION, QUESTION], "context": [CONTEXT]}, "same length, got 2 and 1"),
        ({"question": "  ", "context": CONTEXT}, "question must be a non-empty string"),
    ],
)
def test_bad_inputs_are_value_errors(answerer, call, message):
    with pytest.raises(ValueError, match=message):
        answerer(**call)


def test_per_call_window_sizes_read_a_long_context_in_more_windows(answerer):
    long_context = " ".join([CONTEXT] * 20)
    sizes = AnswerOptions(max_seq_length=64, doc_stride=16, max_query_length=16)
    small = answerer.engine.windower_for(answerer.engine.resolve(sizes))
    assert len(small.windows([QUESTION], [long_context])) > len(answerer.engine.windower.windows([QUESTION],
                                                                                                [long_context]))
    got = answerer(question=QUESTION, context=long_context, max_seq_len=64, doc_stride=16, max_question_len=16)
    assert long_context[got["start"] : got["end"]] == got["answer"]


def test_word_spans_cover_whole_words():
    # "unbelievable runner" as tokens un|believ|able runner, then a question token (-1).
    offsets = np.array([[0, 2], [2, 8], [8, 12], [13, 19], [-1, -1]])
    words = np.array([0, 0, 0, 1, -1])
    assert word_spans(offsets, words).tolist() == [[0, 12], [0, 12], [0, 12], [13, 19], [-1, -1]]


def test_align_to_words_widens_a_span_that_starts_inside_a_word(tiny_bert_dir):
    from qa.decoding import window_candidates
    from qa.windowing import Window

    offsets = np.array([[-1, -1], [0, 2], [2, 8], [8, 12], [13, 19]])
    window = Window(0, np.zeros(5, dtype=np.int64), np.zeros(5, dtype=np.int64), offsets,
                    word_spans(offsets, np.array([-1, 0, 0, 0, 1])))
    start = np.array([0.0, 0.0, 5.0, 0.0, 0.0])  # starts inside "unbelievable"
    end = np.array([0.0, 0.0, 0.0, 5.0, 0.0])
    best = max(window_candidates(window, start, end, n_best=1))
    assert best[1:] == (2, 12)
    best_aligned = max(window_candidates(window, start, end, n_best=1, align_to_words=True))
    assert best_aligned[1:] == (0, 12)


def test_two_positional_strings_are_question_and_context(answerer):
    assert answerer(QUESTION, CONTEXT) == answerer(question=QUESTION, context=CONTEXT)


def test_the_pipeline_defaults_are_derived_from_max_seq_len(answerer):
    from qa.pipeline import window_sizes

    assert window_sizes(None, None, None, 512) == (384, 128, 64)
    assert window_sizes(None, None, None, 256) == (256, 128, 61)  # min(384, positions); room for a quarter
    assert window_sizes(64, None, None) == (64, 32, 13)  # stride min(64 // 2, 128); the question makes room
    assert answerer(question=QUESTION, context=CONTEXT, max_seq_len=64)["answer"]


def test_a_wrapping_engine_that_batches_by_itself_ignores_batch_size(answerer):
    from serve.batching import MicroBatcher

    batcher = MicroBatcher(answerer.engine, max_batch_size=4, max_wait_ms=1)
    try:
        got = QuestionAnswerer(batcher)(question=QUESTION, context=CONTEXT, batch_size=2)
        assert got == pytest.approx(answerer(question=QUESTION, context=CONTEXT))
    finally:
        batcher.close()


def test_passages_are_one_document_and_bad_ones_name_their_index(answerer):
    passages = ["Pierre Curie was born in Paris.", {"text": "The bridge opened in 1894.", "id": "b"}]
    result = answerer(question="When did it open?", passages=passages, top_k=4)
    for answer in result if isinstance(result, list) else [result]:
        index = answer["passage"]["index"]
        text = passages[index] if index == 0 else passages[index]["text"]
        assert text[answer["start"] : answer["end"]] == answer["answer"]
        assert answer["passage"] == ({"index": 1, "id": "b"} if index else {"index": 0})
    with pytest.raises(InvalidArgument, match=r"passages\[1\]"):
        answerer(question="When?", passages=["fine", "  "])
    with pytest.raises(InvalidArgument, match="passages= goes with one question"):
        answerer(question="When?", context="x", passages=["fine"])
