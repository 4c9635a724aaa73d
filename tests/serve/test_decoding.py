"""Span decoding: n-best pairing, constraints, cross-window ranking, distinct answers."""

import numpy as np
import pytest

from qa.decoding import decode_example, rank_answers, window_candidates
from qa.windowing import Window


def make_window(context_offsets, question_tokens=2, example_index=0):
    """[CLS] q... [SEP] ctx... [SEP] with the given context offsets."""
    offsets = [(-1, -1)] * (question_tokens + 2) + list(context_offsets) + [(-1, -1)]
    n = len(offsets)
    return Window(example_index, np.arange(n), np.zeros(n, dtype=np.int64), np.asarray(offsets, dtype=np.int64))


CONTEXT = "alpha beta gamma delta"
OFFSETS = [(0, 5), (6, 10), (11, 16), (17, 22)]


def logits_for(window, starts, ends):
    s = np.full(len(window), -10.0)
    e = np.full(len(window), -10.0)
    for i, v in starts.items():
        s[i] = v
    for i, v in ends.items():
        e[i] = v
    return s, e


def test_best_span_maps_to_characters():
    w = make_window(OFFSETS)
    s, e = logits_for(w, {5: 5.0}, {6: 5.0})  # tokens 5..6 = beta gamma
    [best] = decode_example(CONTEXT, [w], [s], [e])
    assert (best.text, best.start, best.end) == ("beta gamma", 6, 16)


def test_question_and_special_tokens_are_never_answers():
    w = make_window(OFFSETS)
    s, e = logits_for(w, {0: 50.0, 1: 40.0, 4: 1.0}, {0: 50.0, 2: 40.0, 4: 1.0})
    [best] = decode_example(CONTEXT, [w], [s], [e])
    assert best.text == "alpha"


def test_backwards_and_too_long_spans_are_dropped():
    w = make_window(OFFSETS)
    # The highest sum pairs start 7 with end 4 (backwards): it must lose to the best forward pair (4, 4).
    s, e = logits_for(w, {7: 9.0, 4: 1.0}, {4: 9.0, 7: 0.5})
    [best] = decode_example(CONTEXT, [w], [s], [e])
    assert best.text == "alpha"
    s, e = logits_for(w, {4: 9.0}, {7: 9.0})
    [best] = decode_example(CONTEXT, [w], [s], [e])
    assert best.text == "alpha beta gamma delta"
    [short] = decode_example(CONTEXT, [w], [s], [e], max_answer_length=2)
    assert len(short.text.split()) <= 2


def test_best_window_wins_and_scores_are_probabilities():
    context = "one two three four five six"
    w1 = make_window([(0, 3), (4, 7), (8, 13), (14, 18)], example_index=0)
    w2 = make_window([(8, 13), (14, 18), (19, 23), (24, 27)], example_index=0)
    s1, e1 = logits_for(w1, {4: 1.0}, {4: 1.0})
    s2, e2 = logits_for(w2, {6: 6.0}, {6: 6.0})
    answers = decode_example(context, [w1, w2], [s1, s2], [e1, e2], top_k=3)
    assert answers[0].text == "five"
    assert answers[0].score > answers[1].score
    assert all(0 <= a.score <= 1 for a in answers)
    assert all(context[a.start:a.end] == a.text for a in answers)


def test_top_k_answers_are_distinct_texts():
    # Overlapping windows produce the same span twice; it must appear once.
    candidates = [(5.0, 0, 5), (5.0, 0, 5), (4.0, 6, 10), (3.0, 0, 10)]
    answers = rank_answers(CONTEXT, candidates, top_k=3)
    assert [a.text for a in answers] == ["alpha", "beta", "alpha beta"]


def test_window_without_context_gives_no_answer():
    w = make_window([])
    s, e = logits_for(w, {}, {})
    assert window_candidates(w, s, e) == []
    assert decode_example("", [w], [s], [e]) == []


def test_ties_are_deterministic():
    w = make_window(OFFSETS)
    s = np.zeros(len(w))
    e = np.zeros(len(w))
    first = decode_example(CONTEXT, [w], [s], [e], top_k=5)
    second = decode_example(CONTEXT, [w], [s], [e], top_k=5)
    assert first == second
    assert sum(a.score for a in first) == pytest.approx(sum(a.score for a in second))


# --- abstention ------------------------------------------------------------------------------


def with_null(window, starts, ends, null_start, null_end):
    s, e = logits_for(window, starts, ends)
    s[0], e[0] = null_start, null_end
    return s, e


@pytest.mark.parametrize("threshold, abstains", [(-3.0, True), (1.9, True), (2.0, False), (2.1, False), (5.0, False)])
def test_abstains_only_when_the_null_score_beats_the_best_span_by_more_than_the_threshold(threshold, abstains):
    w = make_window(OFFSETS)
    s, e = with_null(w, {5: 4.0}, {6: 4.0}, 5.0, 5.0)  # best span 8.0, null 10.0: margin exactly 2.0
    [best] = decode_example(CONTEXT, [w], [s], [e], null_threshold=threshold)
    if abstains:
        assert (best.text, best.start, best.end) == ("", 0, 0)
    else:
        assert best.text == "beta gamma"  # a tie (margin == threshold) keeps the span


def test_the_empty_answer_scores_p_no_answer_and_joins_the_softmax():
    w = make_window(OFFSETS)
    s, e = with_null(w, {5: 4.0}, {6: 4.0}, 5.0, 5.0)
    answers = decode_example(CONTEXT, [w], [s], [e], top_k=3, null_threshold=0.0)
    assert answers[0].text == "" and answers[0].logit == 10.0
    spans = window_candidates(w, s, e)
    logits = np.asarray([c[0] for c in spans] + [10.0])
    expected = np.exp(10.0 - logits.max()) / np.exp(logits - logits.max()).sum()
    assert answers[0].score == pytest.approx(expected)
    assert answers[1].text == "beta gamma" and answers[0].score + sum(a.score for a in answers[1:]) <= 1.0 + 1e-9


def test_no_threshold_never_abstains_and_keeps_the_scores():
    w = make_window(OFFSETS)
    s, e = with_null(w, {5: 4.0}, {6: 4.0}, 50.0, 50.0)
    assert decode_example(CONTEXT, [w], [s], [e]) == decode_example(CONTEXT, [w], [s], [e], null_threshold=None)
    assert decode_example(CONTEXT, [w], [s], [e])[0].text == "beta gamma"


def test_a_long_context_takes_the_minimum_null_score_over_its_windows():
    context = "alpha beta gamma delta epsilon zeta"
    w1 = make_window([(0, 5), (6, 10), (11, 16)])
    w2 = make_window([(17, 22), (23, 30), (31, 35)])
    s1, e1 = with_null(w1, {4: 1.0}, {4: 1.0}, 9.0, 9.0)  # this window alone would abstain (18 vs 2)
    s2, e2 = with_null(w2, {5: 3.0}, {6: 3.0}, 1.0, 1.0)  # null 2.0 here: the example's null score
    [best] = decode_example(context, [w1, w2], [s1, s2], [e1, e2], null_threshold=0.0)
    assert best.text == "epsilon zeta"  # best span 6.0 beats the minimum null 2.0
    [best] = decode_example(context, [w1, w2], [s1, s2], [e1, e2], null_threshold=-5.0)
    assert best.text == ""  # 2.0 - 6.0 = -4.0 > -5.0


def test_an_example_without_valid_spans_abstains_when_allowed():
    w = make_window([])
    s, e = with_null(w, {}, {}, 1.0, 1.0)
    assert decode_example("", [w], [s], [e]) == []
    [best] = decode_example("", [w], [s], [e], null_threshold=0.0)
    assert best.text == "" and best.score == pytest.approx(1.0)
