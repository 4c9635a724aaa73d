"""Answer-removed, distractor and entity-swapped examples: what they remove, insert, shift and swap."""

import json
import random

import pytest

from train.config import ConfigError
from train.data import SquadExample, load_squad
from train.hard_examples import (
    ANSWER_REMOVED_SUFFIX,
    DISTRACTOR_SUFFIX,
    ENTITY_SWAPPED_SUFFIX,
    answer_removed_twins,
    article_names,
    best_distractor,
    entity_swapped_twins,
    insert_sentence,
    names_and_numbers,
    remove_answer_sentences,
    sentence_spans,
    swap_an_entity,
    with_distractors,
    words_of,
)

PARAGRAPH = ("Dr. Ada Lovelace was born in London in 1815. She worked with Charles Babbage on the "
             "Analytical Engine. Her notes, published in 1843, hold the first algorithm meant for a machine.")
OTHER = ("The Analytical Engine was never finished. Babbage built a small part of it in 1834. "
         "Lovelace's father, Lord Byron, was born in London in 1788.")


def example(question, answer, context=PARAGRAPH, qid="q1", title="Ada"):
    start = context.index(answer)
    return SquadExample(qid, title, context, question, (answer,), (start,))


def test_sentences_tile_the_text_and_keep_abbreviations():
    spans = sentence_spans(PARAGRAPH)
    assert "".join(PARAGRAPH[s:e] for s, e in spans) == PARAGRAPH
    sentences = [PARAGRAPH[s:e].strip() for s, e in spans]
    assert sentences[0] == "Dr. Ada Lovelace was born in London in 1815."  # "Dr." does not end a sentence
    assert len(sentences) == 3


def test_answer_sentence_is_removed_and_nothing_else():
    e = example("Where was Ada Lovelace born?", "London")
    remaining = remove_answer_sentences(e)
    assert remaining == ("She worked with Charles Babbage on the Analytical Engine. Her notes, published in 1843, "
                         "hold the first algorithm meant for a machine.")


def test_every_answer_span_removes_its_sentence():
    e = SquadExample("q", "Ada", PARAGRAPH, "When?", ("1815", "1843"),
                     (PARAGRAPH.index("1815"), PARAGRAPH.index("1843")))
    assert remove_answer_sentences(e) == "She worked with Charles Babbage on the Analytical Engine."


def test_no_twin_when_the_answer_text_remains_elsewhere():
    context = "Babbage designed the engine. Babbage was English."
    e = SquadExample("q", "t", context, "Who designed the engine?", ("Babbage",), (0,))
    assert remove_answer_sentences(e) is None  # "Babbage" still answers it from the second sentence


def test_no_twin_when_the_answer_is_the_only_sentence():
    assert remove_answer_sentences(example("When?", "1815", context="Ada was born in 1815.")) is None


def test_answer_removed_twins_are_seeded_unanswerable_and_counted():
    questions = [example("Where was she born?", "London", qid="a"), example("With whom?", "Charles Babbage", qid="b"),
                 example("When?", "1815", context="Ada was born in 1815.", qid="c")]
    built = answer_removed_twins(questions, 1.0, seed=0)
    assert built.drawn == 3 and built.skipped == 1
    assert [t.id for t in built.examples] == ["a" + ANSWER_REMOVED_SUFFIX, "b" + ANSWER_REMOVED_SUFFIX]
    assert all(t.answer_texts == () and t.answer_starts == () for t in built.examples)
    assert answer_removed_twins(questions, 1.0, seed=0) == built
    assert answer_removed_twins(questions, 0.0, seed=0).examples == []


def test_distractor_is_the_most_question_like_sentence_of_another_paragraph():
    e = example("Where was Ada Lovelace born?", "London")
    candidates = [(PARAGRAPH, s, words_of(s)) for s in ["Ada Lovelace was born in London in 1815."]]  # own: never
    candidates += [(OTHER, s, words_of(s)) for s in ["The Analytical Engine was never finished.",
                                                     "Lovelace's father, Lord Byron, was born in London in 1788."]]
    assert best_distractor(e, candidates) is None
    e2 = example("In which year was Ada Lovelace born?", "1815")
    assert best_distractor(e2, candidates) == "Lovelace's father, Lord Byron, was born in London in 1788."


def test_a_sentence_sharing_too_few_words_is_no_distractor():
    e = example("Who wrote the first algorithm?", "Ada Lovelace")
    sentence = "The Analytical Engine was never finished."
    assert best_distractor(e, [(OTHER, sentence, words_of(sentence))]) is None


@pytest.mark.parametrize("seed", range(8))
def test_inserted_sentence_keeps_the_answer_at_its_text(seed):
    e = example("What did her notes hold?", "the first algorithm")
    inserted = insert_sentence(e, "Byron was born in London in 1788.", random.Random(seed))
    assert inserted.id == "q1" + DISTRACTOR_SUFFIX
    start = inserted.answer_starts[0]
    assert inserted.context[start:start + len(e.answer_texts[0])] == e.answer_texts[0]
    assert "Byron was born in London in 1788." in inserted.context
    assert inserted.context.replace("Byron was born in London in 1788.", "").split() == PARAGRAPH.split()


def test_with_distractors_on_the_fixture_keeps_every_answer(fixtures_dir):
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    built = with_distractors(examples, 1.0, seed=3)
    assert built.drawn == len(examples) and len(built.examples) + built.skipped == len(examples)
    for e in built.examples:
        for text, start in zip(e.answer_texts, e.answer_starts):
            assert e.context[start:start + len(text)] == text


def test_heldout_articles_file_errors_name_file_and_field(tmp_path):
    from train.train import read_heldout_titles

    path = tmp_path / "heldout_articles.json"
    path.write_text(json.dumps({"titles": []}))
    with pytest.raises(ConfigError, match=r"heldout_articles.json: titles: must be a non-empty list"):
        read_heldout_titles(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"heldout_articles.json: titles: must be a JSON object"):
        read_heldout_titles(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        read_heldout_titles(str(tmp_path / "missing.json"))
    path.write_text(json.dumps({"titles": ["Ada"]}))
    assert read_heldout_titles(str(path)) == ["Ada"]


def test_names_are_capitalised_runs_without_an_opening_stopword_or_possessive_and_numbers_count_digits():
    text = "The U.S. Army met Dr. Ada Lovelace's pupils in 1,843 rooms at 3 p.m. in London."
    found = [(text[start:end], kind) for start, end, kind in names_and_numbers(text)]
    assert found == [("U.S. Army", "name:2"), ("Dr. Ada Lovelace", "name:3"), ("1,843", "number:4"),
                     ("3", "number:1"), ("London", "name:1")]
    question = "Where did Lovelace publish in 1843?"
    assert [question[s:e] for s, e, _ in names_and_numbers(question, skip_first=True)] == ["Lovelace", "1843"]


def test_a_word_capitalised_only_where_it_opens_a_sentence_is_no_name():
    other = "Actually the engine failed. Then Babbage tried again in Paris."
    names = article_names([example("q?", "Babbage", context=other)])["Ada"]
    assert names["name:1"] == ["Babbage", "Paris"]


def test_the_swap_takes_a_name_of_the_same_kind_the_paragraph_never_mentions():
    own, other = example("When was Ada Lovelace born?", "1815"), example("q?", "1834", OTHER, "q2")
    names = article_names([own, other])["Ada"]
    # "Analytical Engine" is two words too, but the paragraph mentions it
    assert swap_an_entity(own, names, random.Random(0)) == "When was Lord Byron born?"
    numbers = example("What did Lovelace publish in 1843?", "first algorithm")
    for seed in range(5):  # "Lovelace" has no unmentioned one-word partner; 1843 has two
        swapped = swap_an_entity(numbers, names, random.Random(seed))
        assert swapped in ("What did Lovelace publish in 1834?", "What did Lovelace publish in 1788?")
    assert swap_an_entity(example("What was born in London?", "Ada Lovelace"), names, random.Random(0)) is None


def test_entity_swapped_twins_are_seeded_unanswerable_on_the_untouched_paragraph_and_counted():
    questions = [example("When was Ada Lovelace born?", "1815", qid="a"),
                 example("Who worked with Babbage?", "She", qid="b"),  # no unmentioned one-word name
                 example("q?", "1834", OTHER, "c")]
    built = entity_swapped_twins(questions, 1.0, seed=7)
    assert (built.drawn, built.skipped) == (3, 2)
    (twin,) = built.examples
    assert twin.id == "a" + ENTITY_SWAPPED_SUFFIX and twin.context == PARAGRAPH
    assert twin.question == "When was Lord Byron born?" and twin.answer_texts == () == twin.answer_starts
    assert entity_swapped_twins(questions, 1.0, seed=7) == built


def test_training_data_gains_the_entity_swapped_twins_as_unanswerable_questions(tmp_path):
    from train.config import config_from_dict
    from train.train import load_data

    qas = [(PARAGRAPH, "When was Ada Lovelace born?", "1815"), (PARAGRAPH, "When were the notes published?", "1843"),
           (OTHER, "When did Babbage build part of the Analytical Engine?", "1834"),
           (OTHER, "Who was the father of Lovelace?", "Lord Byron")]
    paragraphs = [{"context": context, "qas": [{"id": f"q{i}", "question": q, "answers": [
        {"text": a, "answer_start": context.index(a)}]} for i, (c, q, a) in enumerate(qas) if c == context]}
        for context in (PARAGRAPH, OTHER)]
    data_file = tmp_path / "squad.json"
    data_file.write_text(json.dumps({"version": "1.1", "data": [{"title": "Ada", "paragraphs": paragraphs}]}))
    raw = {"model": {"name_or_path": "x"},
           "data": {"train_file": str(data_file), "validation_file": str(data_file), "entity_swapped_fraction": 0.5},
           "training": {"output_dir": str(tmp_path)}, "gate": {"exact_match": 0, "f1": 0}}
    data = load_data(config_from_dict(raw, "c.yaml"))
    twins = [e for e in data.train if e.id.endswith(ENTITY_SWAPPED_SUFFIX)]
    originals = {e.id: e for e in load_squad(data_file)}
    assert twins and len(twins) == data.entity_swapped and data.entity_swapped + data.entity_swapped_skipped == 2
    assert len(data.train) == len(originals) + len(twins)
    for twin in twins:
        original = originals[twin.id.removesuffix(ENTITY_SWAPPED_SUFFIX)]
        assert twin.answer_texts == () and twin.context == original.context and twin.question != original.question
