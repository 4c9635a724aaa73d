"""squad-qa answer: one pair, a JSON-lines file, and bad lines that are reported, never lost."""

from __future__ import annotations

import io
import json

import pytest

from qa import QuestionAnswerer
from qa.cli import answer_jsonl, main

CONTEXT = "The Harbor Point lighthouse was built in 1874 by the Lighthouse Board."


@pytest.fixture(scope="module")
def answerer(tiny_bert_dir):
    return QuestionAnswerer.from_model_dir(tiny_bert_dir, backend="torch", threads=1)


def test_one_pair_prints_the_pipeline_answer(tiny_bert_dir, answerer, capsys, tmp_path):
    context_file = tmp_path / "context.txt"
    context_file.write_text(CONTEXT, encoding="utf-8")
    code = main(["answer", "--model", str(tiny_bert_dir), "--backend", "torch", "--question", "When?",
                 "--context-file", str(context_file)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(answerer(question="When?", context=CONTEXT))


def test_jsonl_answers_in_order_and_reports_bad_lines(answerer, capsys):
    lines = [
        json.dumps({"id": "q1", "question": "When?", "context": CONTEXT}),
        "{not json",
        json.dumps({"question": "Who?", "context": "\u200b"}),  # no readable text
        "",
        json.dumps({"question": "Who built it?", "context": CONTEXT}),
        json.dumps({"question": ""}),
    ]
    out = io.StringIO()
    answered, skipped = answer_jsonl(answerer, io.StringIO("\n".join(lines) + "\n"), out, {}, "skip")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (answered, skipped) == (2, 3) and len(records) == 5
    assert records[0]["id"] == "q1" and records[0]["result"] == pytest.approx(answerer(question="When?",
                                                                                       context=CONTEXT))
    assert [r.get("line") for r in records] == [None, 2, 3, None, 6]
    assert records[3] == pytest.approx(answerer(question="Who built it?", context=CONTEXT))
    assert "line 2 skipped" in capsys.readouterr().err


def test_on_error_fail_stops_at_the_bad_line(answerer):
    with pytest.raises(ValueError, match="line 2: not JSON"):
        answer_jsonl(answerer, io.StringIO('{"question": "a?", "context": "b c"}\n[\n'), io.StringIO(), {}, "fail")


def test_exit_codes(tiny_bert_dir, tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "When?", "context": CONTEXT}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    model = ["--model", str(tiny_bert_dir), "--backend", "torch"]
    assert main(["answer", *model, "--jsonl", str(good)]) == 0
    assert main(["answer", *model, "--jsonl", str(bad)]) == 1  # skipped, reported
    assert main(["answer", *model, "--jsonl", str(bad), "--on-error", "fail"]) == 2
    assert main(["answer", "--model", str(tmp_path / "missing"), "--question", "q", "--context", "c"]) == 2
    assert "cannot load model" in capsys.readouterr().err
    assert main(["answer", *model, "--question", "When?", "--context", CONTEXT, "--top-k", "0"]) == 2


def test_passages_from_flags_and_from_a_file_name_their_passage(tiny_bert_dir, answerer, capsys, tmp_path):
    passages = ["The Harbor Point lighthouse was built in 1874.", {"text": CONTEXT, "id": "board"}]
    expected = answerer(question="When was it built?", passages=passages)
    passages_file = tmp_path / "passages.json"
    passages_file.write_text(json.dumps(passages), encoding="utf-8")
    common = ["answer", "--model", str(tiny_bert_dir), "--backend", "torch", "--question", "When was it built?"]
    assert main([*common, "--passages-file", str(passages_file)]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file.pop("score") == pytest.approx(expected.pop("score"))
    assert from_file == expected
    index = from_file["passage"]["index"]
    text = passages[index] if isinstance(passages[index], str) else passages[index]["text"]
    assert text[from_file["start"] : from_file["end"]] == from_file["answer"]
    assert main([*common, "--passage", passages[0], "--passage", CONTEXT]) == 0
    from_flags = json.loads(capsys.readouterr().out)
    span = ("answer", "start", "end")
    assert {k: from_flags[k] for k in span} == {k: expected[k] for k in span}
    passages_file.write_text('{"text": "not a list"}', encoding="utf-8")
    assert main([*common, "--passages-file", str(passages_file)]) == 2
    assert str(passages_file) in capsys.readouterr().err
