"""Harder training and evaluation examples made from SQuAD v1.1 questions.

- Answer removed: a question with its own paragraph less every sentence that holds one of its
  answers. It is on topic (same paragraph, same words) but has no answer, so its windows are
  labelled [CLS]. This is what a v1.1 model never sees and what SQuAD 2.0's questions look like.
- Distractor: a sentence of another paragraph of the same article that shares the most words with
  the question (and holds none of its answers) is inserted at a sentence boundary of the
  question's paragraph; the answer is kept and its offsets shifted.
- Entity swapped: a name or number of the question that its paragraph mentions is replaced by one
  of the same kind (a name of as many words, a number of as many digits) from another paragraph of
  the article that this paragraph never mentions. The paragraph is untouched and the question now
  asks about something it does not hold, labelled [CLS]: SQuAD 2.0's "entity swap", its most
  common kind of unanswerable question after the neutral ones (Rajpurkar et al., 2018, table 2).

Sentences come from pysbd (rule-based, offsets into the original text), not a regex: SQuAD's
text is full of "Dr.", "U.S." and "3 p.m.". Both builders are seeded and skip (and count) a
question they cannot transform, so a run reports what it trained on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from bm25s.stopwords import STOPWORDS_EN as _STOPWORDS

from qa.ranking import bm25_words
from train.data import SquadExample

ANSWER_REMOVED_SUFFIX = "#answer-removed"
DISTRACTOR_SUFFIX = "#distractor"
ENTITY_SWAPPED_SUFFIX = "#entity-swapped"
# A distractor shares at least this many distinct BM25 words (stopwords dropped) with the question:
# fewer and it is merely another sentence of the article.
MIN_SHARED_WORDS = 2
STOPWORDS = frozenset(_STOPWORDS)


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


@lru_cache(maxsize=65536)
def sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    """(start, end) character spans of the text's sentences, covering it from 0 to len(text)."""
    spans = [(span.start, span.end) for span in _segmenter().segment(text)]
    if not spans:
        return ((0, len(text)),) if text else ()
    # pysbd's spans keep trailing whitespace; make them tile the text exactly whatever it dropped.
    tiled = []
    for i in range(len(spans)):
        begin = 0 if i == 0 else tiled[-1][1]
        end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        tiled.append((begin, max(end, begin)))
    return tuple(tiled)


def _answer_spans(example: SquadExample) -> list[tuple[int, int]]:
    return [(start, start + len(text)) for start, text in zip(example.answer_starts, example.answer_texts)]


def _holds_an_answer(text: str, example: SquadExample) -> bool:
    folded = text.casefold()
    return any(answer.casefold() in folded for answer in example.answer_texts)


def remove_answer_sentences(example: SquadExample) -> str | None:
    """The example's paragraph without the sentences that overlap any of its answers; None when
    nothing would remain or an answer's text still occurs in what remains."""
    answers = _answer_spans(example)
    kept = [example.context[start:end] for start, end in sentence_spans(example.context)
            if not any(start < a_end and a_start < end for a_start, a_end in answers)]
    remaining = "".join(kept).strip()
    if not remaining or _holds_an_answer(remaining, example):
        return None
    return remaining


@dataclass(frozen=True)
class Built:
    examples: list[SquadExample]
    drawn: int  # questions drawn for the transformation
    skipped: int  # drawn questions it could not be applied to


def _draw(count: int, fraction: float, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(count), round(fraction * count))) if count and fraction > 0 else []


def _transform_drawn(examples: Sequence[SquadExample], fraction: float, seed: int,
                     transform: Callable[[SquadExample, random.Random], SquadExample | None]) -> Built:
    """`transform` applied to a seeded share of the examples (one seeded generator for all), the
    ones it returns None for counted as skipped."""
    drawn = _draw(len(examples), fraction, seed)
    rng = random.Random(seed + 1)
    built = [result for index in drawn if (result := transform(examples[index], rng)) is not None]
    return Built(built, len(drawn), len(drawn) - len(built))


def answer_removed_twins(examples: Sequence[SquadExample], fraction: float, seed: int) -> Built:
    """Unanswerable twins of a seeded share of the questions: own paragraph, answer sentences removed."""

    def twin(example: SquadExample, rng: random.Random) -> SquadExample | None:
        context = remove_answer_sentences(example)
        return None if context is None else SquadExample(example.id + ANSWER_REMOVED_SUFFIX, example.title,
                                                         context, example.question, (), ())

    return _transform_drawn(examples, fraction, seed, twin)


def article_paragraphs(examples: Sequence[SquadExample]) -> dict[str, list[str]]:
    """Title -> the article's distinct paragraphs, in order."""
    by_title: dict[str, dict[str, None]] = {}
    for e in examples:
        by_title.setdefault(e.title, {})[e.context] = None
    return {title: list(paragraphs) for title, paragraphs in by_title.items()}


def article_sentences(examples: Sequence[SquadExample]) -> dict[str, list[tuple[str, str, frozenset[str]]]]:
    """Title -> (paragraph, sentence, its BM25 words) for every sentence of every paragraph of the article."""
    return {title: [(paragraph, sentence, words_of(sentence)) for paragraph in paragraphs
                    for start, end in sentence_spans(paragraph) if (sentence := paragraph[start:end].strip())]
            for title, paragraphs in article_paragraphs(examples).items()}


def words_of(text: str) -> frozenset[str]:
    return frozenset(word for _, word in bm25_words(text))


def best_distractor(example: SquadExample, candidates: Sequence[tuple[str, str, frozenset[str]]]) -> str | None:
    """The sentence of another paragraph sharing the most words with the question (at least
    MIN_SHARED_WORDS) and holding none of its answers; ties go to the first in the article."""
    question_words = words_of(example.question)
    best, best_shared = None, MIN_SHARED_WORDS - 1
    for paragraph, sentence, words in candidates:
        if paragraph == example.context:
            continue
        shared = len(question_words & words)
        if shared > best_shared and not _holds_an_answer(sentence, example):
            best, best_shared = sentence, shared
    return best


def insert_sentence(example: SquadExample, sentence: str, rng: random.Random) -> SquadExample:
    """The example with `sentence` inserted at a seeded sentence boundary of its paragraph (never
    inside an answer); the answers' offsets are shifted past it."""
    answers = _answer_spans(example)
    boundaries = [0] + [end for _, end in sentence_spans(example.context)]
    boundaries = [b for b in dict.fromkeys(boundaries)
                  if not any(a_start < b < a_end for a_start, a_end in answers)]
    at = rng.choice(boundaries)
    before, after = example.context[:at], example.context[at:]
    # One space on each side, without doubling the paragraph's own whitespace.
    piece = ("" if not before or before[-1].isspace() else " ") + sentence + ("" if after[:1].isspace() else " ")
    if not after:
        piece = piece.rstrip()
    context = before + piece + after
    starts = tuple(start + len(piece) if start >= at else start for start in example.answer_starts)
    return replace(example, id=example.id + DISTRACTOR_SUFFIX, context=context, answer_starts=starts)


def with_distractors(examples: Sequence[SquadExample], fraction: float, seed: int,
                     article: Sequence[SquadExample] | None = None) -> Built:
    """A seeded share of the questions with a distracting sentence inserted into their paragraph.

    Returns the transformed questions only (callers decide whether they replace or join the
    originals). `article` gives the paragraphs distractors are drawn from (default: `examples`).
    """
    sentences = article_sentences(article if article is not None else examples)

    def distracted(example: SquadExample, rng: random.Random) -> SquadExample | None:
        sentence = best_distractor(example, sentences.get(example.title, ()))
        return None if sentence is None else insert_sentence(example, sentence, rng)

    return _transform_drawn(examples, fraction, seed, distracted)


# A word that starts with a letter, or a number; names are runs of capitalised words.
_TOKEN = re.compile(r"[^\W\d_][\w'’.-]*|\d[\d,.]*\d|\d")


def names_and_numbers(text: str, skip_first: bool = False) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the names (runs of capitalised words, kind "name:N" for N words) and
    numbers (kind "number:N" for N digits) in `text`. `skip_first` drops the first word, which a
    question capitalises whatever it is."""
    found: list[tuple[int, int, str]] = []
    run: list[re.Match] = []

    def close() -> None:
        while run and run[0].group().casefold() in STOPWORDS:  # "The", "In" opening a sentence
            run.pop(0)
        if run:
            end = run[-1].end()
            last = run[-1].group()
            if last.endswith(".") and "." not in last[:-1]:
                end -= 1  # a full stop, not an abbreviation's ("U.S.")
            end -= 2 if text[end - 2:end] in ("'s", "’s") else 0  # the name, not its possessive
            found.append((run[0].start(), end, f"name:{len(run)}"))
            run.clear()

    for index, match in enumerate(_TOKEN.finditer(text)):
        word = match.group().rstrip(".")
        if word[:1].isdigit():
            close()
            found.append((match.start(), match.start() + len(word), f"number:{sum(c.isdigit() for c in word)}"))
        elif word[:1].isupper() and not (skip_first and index == 0):
            if run and text[run[-1].end():match.start()].strip():
                close()  # only spaces may join the words of one name
            run.append(match)
        else:
            close()
    close()
    return found


def _opens_a_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:;\"'”’)"


def article_names(examples: Sequence[SquadExample]) -> dict[str, dict[str, list[str]]]:
    """Title -> kind -> the distinct names and numbers of the article's paragraphs, in order. A
    capitalised word counts as a name only where the article also capitalises it inside a sentence
    ("Actually" opening a sentence is not a name; "Bell" is)."""
    by_title: dict[str, dict[str, list[str]]] = {}
    for title, paragraphs in article_paragraphs(examples).items():
        kinds: dict[str, dict[str, bool]] = {}  # kind -> name -> seen inside a sentence (numbers: always)
        for paragraph in paragraphs:
            for start, end, kind in names_and_numbers(paragraph):
                names = kinds.setdefault(kind, {})
                name = paragraph[start:end]
                names[name] = names.get(name, False) or kind.startswith("number") or not _opens_a_sentence(
                    paragraph, start)
        by_title[title] = {kind: [name for name, inside in names.items() if inside] for kind, names in kinds.items()}
    return by_title


def swap_an_entity(example: SquadExample, names: dict[str, list[str]], rng: random.Random) -> str | None:
    """The question with one of its names or numbers that the paragraph mentions replaced by one of
    the same kind from `names` (the article's) that neither the paragraph nor the question mentions;
    None when there is none."""
    paragraph, question = example.context.casefold(), example.question
    folded_question = question.casefold()
    targets = [(start, end, kind) for start, end, kind in names_and_numbers(question, skip_first=True)
               if question[start:end].casefold() in paragraph]
    rng.shuffle(targets)
    for start, end, kind in targets:
        candidates = [name for name in names.get(kind, ())
                      if name.casefold() not in paragraph and name.casefold() not in folded_question]
        if candidates:
            return question[:start] + rng.choice(candidates) + question[end:]
    return None


def entity_swapped_twins(examples: Sequence[SquadExample], fraction: float, seed: int,
                         article: Sequence[SquadExample] | None = None) -> Built:
    """Unanswerable twins of a seeded share of the questions: own paragraph, a name or number of the
    question swapped for one of the article's that the paragraph does not mention. `article` gives
    the paragraphs the names come from (default: `examples`)."""
    names = article_names(article if article is not None else examples)

    def twin(example: SquadExample, rng: random.Random) -> SquadExample | None:
        question = swap_an_entity(example, names.get(example.title, {}), rng)
        return None if question is None else SquadExample(example.id + ENTITY_SWAPPED_SUFFIX, example.title,
                                                          example.context, question, (), ())

    return _transform_drawn(examples, fraction, seed, twin)
