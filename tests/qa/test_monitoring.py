"""The model-behaviour signals: binning as Prometheus bins, the PSI and its verdicts, the profile file."""

import json
import math

import numpy as np
import pytest

from qa.decoding import Answer
from qa.monitoring import (
    ANSWER_SCORE,
    MIN_LIVE_QUESTIONS,
    SIGNALS,
    WINDOWS_READ,
    Profile,
    compare,
    observations,
    psi,
    verdict,
)
from qa.windowing import Reading


def test_counts_bin_as_prometheus_le_buckets():
    # A value equal to a bound falls in that bound's bucket ("le"), above the last in +Inf.
    assert WINDOWS_READ.counts([1, 1.5, 2, 3, 300]) == [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert sum(ANSWER_SCORE.counts([0.0, 0.5, 1.0])) == 3


def test_psi_is_zero_for_the_same_shape_and_grows_with_the_shift():
    reference = [10, 20, 40, 20, 10]
    assert psi(reference, [n * 3 for n in reference]) == pytest.approx(0.0)
    small = psi(reference, [12, 20, 38, 20, 10])
    large = psi(reference, [40, 30, 20, 5, 5])
    assert 0 < small < PSI_SMALL_ENOUGH < large
    assert math.isfinite(psi(reference, [0, 0, 0, 0, 5]))  # empty buckets are floored, not infinite
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


PSI_SMALL_ENOUGH = 0.1


def test_psi_matches_its_definition():
    ref, cur = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    assert psi(ref, cur) == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))))


@pytest.mark.parametrize("value, expected", [(0.05, "stable"), (0.1, "stable"), (0.2, "watch"), (0.3, "drift")])
def test_verdicts(value, expected):
    assert verdict(value) == expected


def test_observations_of_an_answer_and_of_an_abstention():
    reading = Reading(question_tokens=7, context_tokens=900, windows=3)
    answer = Answer("Miriam Holt", 0, 11, 0.8, 5.0, reading=reading)
    assert observations(answer) == {"qa_answer_score": 0.8, "qa_answer_words": 2, "qa_question_tokens": 7,
                                    "qa_context_tokens": 900, "qa_windows_read": 3}
    empty = Answer("", 0, 0, 0.9, 1.0, reading=reading)
    assert "qa_answer_score" not in observations(empty) and observations(empty)["qa_windows_read"] == 3


def answers(scores, empty=0):
    reading = Reading(8, 150, 1)
    return [Answer("an answer", 0, 9, s, 1.0, reading=reading) for s in scores] + [
        Answer("", 0, 0, 0.9, 1.0, reading=reading)] * empty


def test_profiles_compare_signal_by_signal(tmp_path):
    reference = Profile.of_answers(answers([0.9] * 150 + [0.3] * 50, empty=10), True, 0.5, {"data_file": "dev"})
    assert reference.rates == {"low_confidence": [50, 200], "abstention": [10, 210]}
    path = tmp_path / "reference_profile.json"
    reference.write(path)
    same = Profile.of_answers(answers([0.9] * 300 + [0.3] * 100, empty=20), True, 0.5)
    shifted = Profile.of_answers(answers([0.3] * 300 + [0.9] * 100, empty=200), True, 0.5)
    report = compare(Profile.read(path), same)
    assert {report[s.name]["verdict"] for s in SIGNALS} == {"stable"} and report["abstention"]["verdict"] == "stable"
    report = compare(Profile.read(path), shifted)
    assert report["qa_answer_score"]["verdict"] == "drift" and report["low_confidence"]["verdict"] == "drift"
    assert report["abstention"]["live_rate"] == 0.3333 and report["abstention"]["verdict"] == "drift"
    assert report["qa_context_tokens"]["verdict"] == "stable"  # same lengths: no drift claimed
    few = compare(reference, Profile.of_answers(answers([0.9] * (MIN_LIVE_QUESTIONS - 1)), False, 0.5))
    assert few["qa_answer_score"]["verdict"] == "too few observations"


def test_a_profile_with_other_buckets_is_refused(tmp_path):
    path = tmp_path / "reference_profile.json"
    Profile.of_answers(answers([0.9]), False, 0.5).write(path)
    raw = json.loads(path.read_text())
    raw["histograms"]["qa_answer_score"] = [1, 2, 3]
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="histograms.qa_answer_score must hold 12 counts"):
        Profile.read(path)
