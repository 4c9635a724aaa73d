"""SQuAD 2.0 scoring on hand-made cases (parity with the official script was checked on dev-v2.0; see docs)."""

import pytest

from train.metrics.squad_v2 import compute_score_v2, f1_v2

REFS = {"a": ["the Eiffel Tower", "Eiffel Tower"], "b": ["1894"], "c": [], "d": []}


def test_empty_answers_score_one_only_against_an_empty_gold():
    assert f1_v2("", "") == 1.0
    assert f1_v2("", "Paris") == 0.0
    assert f1_v2("Paris", "") == 0.0
    assert f1_v2("the", "") == 1.0  # "the" normalises to no tokens


def test_scores_with_answerable_and_unanswerable_questions():
    predictions = {"a": "Eiffel Tower in Paris", "b": "1894", "c": "", "d": "Paris"}
    result = compute_score_v2(REFS, predictions)
    a_f1 = 2 * (2 / 4) * 1.0 / (2 / 4 + 1.0)  # 2 common tokens, 4 predicted, 2 gold
    assert result["total"] == 4 and result["HasAns_total"] == 2 and result["NoAns_total"] == 2
    assert result["exact"] == pytest.approx(100 * (0 + 1 + 1 + 0) / 4)
    assert result["f1"] == pytest.approx(100 * (a_f1 + 1 + 1 + 0) / 4)
    assert result["HasAns_f1"] == pytest.approx(100 * (a_f1 + 1) / 2)
    assert result["NoAns_exact"] == 50.0


def test_threshold_turns_confident_no_answers_into_abstentions():
    predictions = {"a": "Eiffel Tower", "b": "1900", "c": "", "d": "Paris"}
    na = {"a": 0.1, "b": 0.7, "c": 0.9, "d": 0.8}
    # Above 0.5: b (answerable: wrong either way), c and d (unanswerable: now right).
    result = compute_score_v2(REFS, predictions, na, na_prob_thresh=0.5)
    assert result["exact"] == 100 * (1 + 0 + 1 + 1) / 4
    # The best threshold abstains on everything above 0.1: a right, b abstained (0), c and d right.
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == 0.1


def test_missing_predictions_are_an_error_not_a_silent_zero():
    with pytest.raises(ValueError, match="1 questions have no prediction"):
        compute_score_v2(REFS, {"a": "", "b": "", "c": ""})
