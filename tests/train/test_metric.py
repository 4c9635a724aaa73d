"""The local SQuAD v1.1 metric scores exactly as the official evaluate-v1.1.py."""

import json
import subprocess
import sys

import pytest

from train.metrics.squad_v1 import compute_score, exact_match_score, f1_score, normalize_answer


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("The Cat!", "cat"),
        ("an  apple,   a pear", "apple pear"),
        ("Theatre", "theatre"),  # 'the' only as a whole word
        ("  A\tB\nC  ", "b c"),  # 'a' is an article
        ("U.S.A.", "usa"),
        ("dont-stop", "dontstop"),
        ("Zoë's café", "zoës café"),  # non-ASCII letters are kept
    ],
)
def test_normalisation(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_f1_by_hand():
    # prediction tokens {cat, sat}; reference {cat, sat, on, mat}: P=1, R=0.5 -> F1=2/3
    assert f1_score("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: common = min counts
    # "a" is an article: {b} against {b, b} gives P=1, R=0.5
    assert f1_score("a a b", "a b b") == pytest.approx(2 / 3)
    assert f1_score("x x b", "x b b") == pytest.approx(2 / 3)
    assert f1_score("", "anything") == 0.0
    assert f1_score("the", "a") == 0.0  # both normalise to nothing: official v1.1 gives 0


def test_exact_match_ignores_case_punctuation_articles():
    assert exact_match_score("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match_score("Eiffel", "eiffel tower") == 0.0


def test_max_over_references_and_unanswered_questions(capsys):
    references = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["1874"], "q3": ["blue"]}
    predictions = {"q1": "Broncos", "q2": "in 1874"}
    score = compute_score(references, predictions)
    # q1: EM max(0, 1)=1 ('the Broncos' -> 'broncos'); q2: EM 0, F1 2*(.5*1)/(1.5)=2/3; q3 unanswered: 0
    assert score["exact_match"] == pytest.approx(100 * 1 / 3)
    assert score["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert "Unanswered question q3 will receive score 0." in capsys.readouterr().err


def test_agrees_with_transformers_squad_metrics_on_non_empty_answers():
    """An independent implementation (transformers' copy of the official script) gives the same numbers."""
    from transformers.data.metrics import squad_metrics

    pairs = [
        ("The Normans", "Normans"), ("in the 10th and 11th centuries", "10th and 11th centuries"),
        ("Rollo", "Rollo, a Viking leader"), ("1066!", "1066"), ("a b c d", "c d e f"),
        ("São Paulo", "sao paulo"), ("New  York City", "new york"),
    ]
    for prediction, truth in pairs:
        assert f1_score(prediction, truth) == pytest.approx(squad_metrics.compute_f1(truth, prediction))
        assert exact_match_score(prediction, truth) == squad_metrics.compute_exact(truth, prediction)


def test_evaluate_module_matches_compute_score():
    import evaluate

    metric = evaluate.load("train/metrics/squad_v1.py")
    result = metric.compute(
        predictions=[{"id": "1", "prediction_text": "the cat sat"}, {"id": "2", "prediction_text": "Paris"}],
        references=[
            {"id": "1", "answers": {"text": ["cat sat on mat"], "answer_start": [0]}},
            {"id": "2", "answers": {"text": ["Paris", "in Paris"], "answer_start": [0, 0]}},
        ],
    )
    assert result == pytest.approx(compute_score({"1": ["cat sat on mat"], "2": ["Paris", "in Paris"]},
                                                 {"1": "the cat sat", "2": "Paris"}))
    assert result["exact_match"] == 50.0


def test_score_cli(tmp_path, fixtures_dir):
    predictions = {"lh1": "Miriam Holt", "lh2": "in 1874", "bk1": "Varga"}
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(predictions))
    out = subprocess.run(
        [sys.executable, "-m", "train.score", "--data", str(fixtures_dir / "tiny_squad.json"),
         "--predictions", str(path)],
        capture_output=True, text=True, check=True,
    )
    printed = json.loads(out.stdout)
    from train.data import load_squad, references

    assert printed == compute_score(references(load_squad(fixtures_dir / "tiny_squad.json")), predictions)
    assert 0 < printed["f1"] < 100


def test_score_cli_rejects_bad_predictions(tmp_path, fixtures_dir):
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps({"lh1": 5}))
    out = subprocess.run(
        [sys.executable, "-m", "train.score", "--data", str(fixtures_dir / "tiny_squad.json"),
         "--predictions", str(path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "prediction for question 'lh1' must be a string" in out.stderr
