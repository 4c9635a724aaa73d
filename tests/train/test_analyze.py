"""The error analysis: its labelling rules, and a run on the fixture with a predictions file."""

import json

import pytest

from train.analyze import bucket_label, error_kind, question_type, run


@pytest.mark.parametrize(("question", "kind"), [
    ("What is the capital of France?", "what"),
    ("In which year did it open?", "which"),
    ("How many people live there?", "how"),
    ("The treaty was signed when?", "when"),
    ("Name the river that flows through it.", "other"),
])
def test_question_type_is_the_first_question_word(question, kind):
    assert question_type(question) == kind


@pytest.mark.parametrize(("prediction", "gold", "kind"), [
    ("the year 1874", "1874", "boundary: too long"),
    ("Gustave", "Gustave Eiffel", "boundary: too short"),
    ("Eiffel and partners", "Gustave Eiffel", "partial overlap"),
    ("1889", "1874", "wrong number or date"),
    ("March", "in 1874", "wrong number or date"),
    ("Paris", "London", "wrong entity"),
    ("a large iron tower", "wrought iron", "partial overlap"),
    ("because of the wind", "to attract tourists", "wrong span"),
    ("", "1874", "no answer"),
    ("nitrogen", "nitrogen/oxygen mixture", "boundary: too short"),  # no common word once "/" is deleted
])
def test_error_kinds(prediction, gold, kind):
    assert error_kind(prediction, gold) == kind


def test_buckets_name_their_range():
    buckets = ((1, 1), (2, 3), (4, 10**9))
    assert [bucket_label(v, buckets, "words") for v in (1, 3, 50)] == ["1 word", "2-3 words", "> 3 words"]
    with pytest.raises(ValueError, match="in no bucket"):
        bucket_label(0, buckets, "words")


def test_a_run_on_the_fixture_writes_tables_that_add_up(tiny_bert_dir, fixtures_dir, tmp_path):
    data = fixtures_dir / "tiny_squad.json"
    raw = json.loads(data.read_text())
    questions = [qa for article in raw["data"] for p in article["paragraphs"] for qa in p["qas"]]
    # Every other question exactly right, the rest wrong: EM 100 * ceil(n/2) / n.
    predictions = {qa["id"]: qa["answers"][0]["text"] if i % 2 == 0 else "zzz" for i, qa in enumerate(questions)}
    (tmp_path / "predictions.json").write_text(json.dumps(predictions))
    report = run(tiny_bert_dir, data, tmp_path / "out", tmp_path / "predictions.json")
    right = (len(questions) + 1) // 2
    assert report["questions"] == len(questions)
    assert report["exact_match"] == pytest.approx(100 * right / len(questions))
    for table in ("by_question_type", "by_context_length", "by_windows", "by_answer_length"):
        assert sum(n for _, n, _, _ in report[table]) == len(questions), table
    assert sum(n for _, n, _ in report["error_kinds"]) == len(questions) - right
    text = (tmp_path / "out" / "error_analysis.md").read_text()
    assert "## F1 by question type" in text and "| zzz |" in text
    assert (tmp_path / "out" / "error_analysis.png").stat().st_size > 10_000


def test_a_predictions_file_for_other_questions_is_refused(tiny_bert_dir, fixtures_dir, tmp_path):
    (tmp_path / "predictions.json").write_text(json.dumps({"not-a-fixture-id": "1874"}))
    with pytest.raises(ValueError, match="no prediction for any of the"):
        run(tiny_bert_dir, fixtures_dir / "tiny_squad.json", tmp_path / "out", tmp_path / "predictions.json")
