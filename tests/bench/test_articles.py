"""The whole-article set: every answer offset still points at its answer inside the joined article."""

from bench.articles import PARAGRAPH_SEPARATOR, article_examples, other_articles
from bench.documents import build_document
from train.data import load_squad


def test_answers_are_shifted_into_the_joined_article(fixtures_dir):
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    built = article_examples(examples)
    assert built.articles == len({e.title for e in examples})
    assert len(built.examples) == len(examples)
    for example in built.examples:
        for text, start in zip(example.answer_texts, example.answer_starts):
            assert example.context[start : start + len(text)] == text
    paragraphs = list(dict.fromkeys(e.context for e in examples if e.title == examples[0].title))
    assert built.examples[0].context == PARAGRAPH_SEPARATOR.join(paragraphs)


def test_titles_pick_articles_and_each_question_gets_another_article(fixtures_dir):
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    title = examples[0].title
    built = article_examples(examples, {title})
    assert {e.title for e in built.examples} == {title}
    everything = article_examples(examples).examples
    others = other_articles(everything)
    assert len({e.title for e in everything}) > 1
    assert all(others[e.id] != e.context for e in everything)


def test_a_document_of_n_characters_asks_only_questions_whose_paragraph_is_whole():
    paragraphs = [("a" * 50, ["q1"]), ("b" * 50, ["q2"]), ("c" * 50, ["q3"])]
    document, asked = build_document(paragraphs, 120)
    assert len(document) == 120 and asked == ["q1", "q2"]
    assert document.startswith("a" * 50 + PARAGRAPH_SEPARATOR + "b" * 50)
