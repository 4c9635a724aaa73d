"""SQuAD reading: plain and gzip, validation errors name the file and the question id."""

import copy
import gzip
import json

import pytest

from qa.files import file_sha256
from train.data import SquadFormatError, load_squad, parse_squad, references


@pytest.fixture
def raw(fixtures_dir):
    return json.loads((fixtures_dir / "tiny_squad.json").read_text(encoding="utf-8"))


def test_plain_and_gzip_read_the_same(tmp_path, fixtures_dir, raw):
    gz = tmp_path / "tiny.json.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        json.dump(raw, handle)
    plain = load_squad(fixtures_dir / "tiny_squad.json")
    assert plain == load_squad(gz)
    assert len(plain) == sum(len(p["qas"]) for a in raw["data"] for p in a["paragraphs"])


def test_sha256_is_of_the_decompressed_json(tmp_path):
    payload = b'{"data": []}'
    (tmp_path / "a.json").write_bytes(payload)
    with gzip.open(tmp_path / "a.json.gz", "wb") as handle:
        handle.write(payload)
    assert file_sha256(tmp_path / "a.json") == file_sha256(tmp_path / "a.json.gz")


def test_every_example_indexes_its_answers(fixtures_dir):
    for example in load_squad(fixtures_dir / "tiny_squad.json"):
        for text, start in zip(example.answer_texts, example.answer_starts):
            assert example.context[start:start + len(text)] == text


def test_bad_answer_start_names_file_and_question(raw):
    broken = copy.deepcopy(raw)
    qa = broken["data"][0]["paragraphs"][0]["qas"][1]
    qa["answers"][0]["answer_start"] += 3
    with pytest.raises(SquadFormatError) as err:
        parse_squad(broken, "my.json")
    assert str(err.value).startswith(f"my.json: question {qa['id']!r}: answers[0].answer_start=")
    assert err.value.question_id == qa["id"]


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("answers"), "'answers' must be a non-empty list"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(question=" "), "'question' must be a non-empty"),
        (lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="3"),
         "must be an integer"),
        (lambda d: d["data"][1]["paragraphs"][0]["qas"][0].update(id="lh1"), "duplicate id"),
        (lambda d: d["data"][0]["paragraphs"][0].pop("context"), "needs a 'context' string"),
        (lambda d: d.pop("data"), "top level must be an object with a 'data' list"),
    ],
)
def test_malformed_files_are_rejected(raw, mutate, fragment):
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(SquadFormatError, match="^bad.json") as err:
        parse_squad(broken, "bad.json")
    assert fragment in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(SquadFormatError, match="file not found"):
        load_squad(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(SquadFormatError, match="junk.json: not readable SQuAD JSON"):
        load_squad(tmp_path / "junk.json")
    (tmp_path / "junk.json.gz").write_bytes(b"not gzip")
    with pytest.raises(SquadFormatError, match="junk.json.gz: not readable SQuAD JSON"):
        load_squad(tmp_path / "junk.json.gz")


def test_references_keep_all_answers(fixtures_dir):
    refs = references(load_squad(fixtures_dir / "tiny_squad.json"))
    assert refs["lh1"] == ["Miriam Holt", "the engineer Miriam Holt"]
