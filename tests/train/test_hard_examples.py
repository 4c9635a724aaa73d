"""Answer-removed and distractor examples: what they remove, insert and shift."""

import json
import random

import pytest

from train.config import ConfigError
from train.data import SquadExample, load_squad
from train.hard_examples import (
    ANSWER_REMOVED_SUFFIX,
    DISTRACTOR_SUFFIX,
    answer_removed_twins,
    best_distractor,
    insert_sentence,
    remove_answer_sentences,
    sentence_spans,
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
