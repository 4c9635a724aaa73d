"""make feedback-export and the Label Studio importer: what becomes training data, merged and reported."""

from __future__ import annotations

import json

import pytest

from feedback.export import SQUAD_FILE, UNANSWERABLE_FILE, export
from feedback.label_studio import import_file, items_from_export, utf16_to_code_points
from feedback.store import FeedbackItem, FeedbackStore
from train.data import load_squad

LIGHTHOUSE = "Miriam Holt built the lighthouse in 1874. It stands on the northern cape."
BAKERY = "The village bakery opened in 1931. Its founder was Otto Brandt."


@pytest.fixture()
def store(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.migrate()
    return store


def add(store, question, context, start, end, verdict, correction=(None, None)):
    return store.add(FeedbackItem(question, context, start, end, verdict, *correction))


def test_the_export_is_squad_the_loader_accepts_with_duplicates_merged_and_conflicts_reported(store, tmp_path):
    when = "When was the lighthouse built?"
    add(store, when, LIGHTHOUSE, 0, 11, "wrong", (36, 40))
    add(store, when, LIGHTHOUSE, 36, 40, "correct")  # the same right span: merged
    add(store, "Who founded the bakery?", BAKERY, 29, 33, "wrong", (51, 62))
    add(store, "Who founded the bakery?", BAKERY, 51, 62, "unanswerable")  # conflicts with the correction
    add(store, "Where is the lighthouse?", LIGHTHOUSE, 0, 11, "wrong")  # wrong, right span unknown
    add(store, "Who painted the lighthouse?", LIGHTHOUSE, 0, 0, "unanswerable")
    report = export(store.url, tmp_path / "out")
    examples = load_squad(tmp_path / "out" / SQUAD_FILE)
    assert [(e.question, e.answer_texts) for e in examples] == [(when, ("1874",))]
    (impossible,) = load_squad(tmp_path / "out" / UNANSWERABLE_FILE, require_answers=False)
    assert impossible.question == "Who painted the lighthouse?" and impossible.answer_texts == ()
    assert report["merged_duplicates"] == 2 and report["left_out_wrong_without_correction"] == 1
    (conflict,) = report["conflicts"]
    assert conflict["verdicts"] == ["'Otto Brandt'", "unanswerable"]


def test_several_right_spans_are_all_kept_and_a_span_called_right_and_wrong_is_a_conflict(store, tmp_path):
    who = "Who built the lighthouse?"
    add(store, who, LIGHTHOUSE, 7, 11, "correct")  # "Holt"
    add(store, who, LIGHTHOUSE, 22, 32, "wrong", (0, 11))  # "lighthouse", corrected to "Miriam Holt"
    add(store, who, LIGHTHOUSE, 0, 11, "correct")
    stands = "Where does the lighthouse stand?"
    add(store, stands, LIGHTHOUSE, 59, 72, "correct")  # "northern cape"
    add(store, stands, LIGHTHOUSE, 59, 72, "wrong", (52, 72))
    report = export(store.url, tmp_path / "out")
    (example,) = load_squad(tmp_path / "out" / SQUAD_FILE)
    # the most often confirmed span first: training reads it; both are references
    assert example.question == who and example.answer_texts == ("Miriam Holt", "Holt")
    assert example.answer_starts == (0, 7) and report["questions_with_several_answers"] == 1
    (conflict,) = report["conflicts"]
    assert conflict["question"] == stands and conflict["verdicts"] == ["'northern cape' right and wrong"]


def test_an_empty_store_exports_empty_files(store, tmp_path):
    report = export(store.url, tmp_path / "out")
    assert report["answerable_questions"] == 0
    assert load_squad(tmp_path / "out" / SQUAD_FILE) == []


def label_studio_task(task_id, text, question, spans=(), choices=(), cancelled=False):
    result = [{"type": "labels", "from_name": "answer", "to_name": "text",
               "value": {"start": s, "end": e, "text": t, "labels": ["Answer"]}} for s, e, t in spans]
    if choices:
        result.append({"type": "choices", "value": {"choices": list(choices)}})
    return {"id": task_id, "data": {"text": text, "question": question},
            "annotations": [{"id": task_id * 10, "result": result, "was_cancelled": cancelled}]}


def test_label_studio_spans_become_right_answers_in_code_points(store, tmp_path):
    text = "The 🚀 launch was in 1969 from Florida."
    # Label Studio counts UTF-16 units: the rocket is two, so "1969" starts at 21, not 20.
    tasks = [label_studio_task(1, text, "When was the launch?", spans=[(21, 25, "1969")]),
             label_studio_task(2, LIGHTHOUSE, "Who painted it?", choices=["Not in the text"]),
             label_studio_task(3, LIGHTHOUSE, "Who built it?", spans=[(0, 11, "Miriam Holt")], cancelled=True),
             {"id": 4, "data": {"text": LIGHTHOUSE}, "annotations": []}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False))
    report = import_file(path, store.url, "question", "text")
    assert report["stored"] == 2 and report["cancelled_annotations"] == 1
    assert report["problems"] == [f"{path}: task 4.data.question: must be a non-empty string (see --question-field "
                                  "and --context-field)"]
    first, second = store.items()
    assert text[first["answer_start"]:first["answer_end"]] == "1969" and first["source"] == "label-studio"
    assert second["verdict"] == "unanswerable"


def test_a_span_whose_text_does_not_match_is_reported_and_not_stored():
    imported = items_from_export([label_studio_task(7, LIGHTHOUSE, "Who built it?", spans=[(0, 5, "Otto")])])
    assert imported.items == [] and imported.problems[0].startswith("task 7.annotations[0].result[0].value.text")


def test_utf16_offsets_become_code_points():
    assert utf16_to_code_points("a🚀b", 3) == 2 and utf16_to_code_points("abc", 2) == 2
