"""SQuAD v1.1 reading and validation.

Local JSON files (plain or gzip) are the default; a Hub dataset id stays possible for online
users. Every answer_start is checked against its answer text on load: a malformed file fails
with an error naming the file and the question id, before any training time is spent.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SquadFormatError(ValueError):
    def __init__(self, path: str | Path, problem: str, question_id: str | None = None) -> None:
        self.path = str(path)
        self.question_id = question_id
        where = f"{path}: question {question_id!r}" if question_id is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class SquadExample:
    id: str
    title: str
    context: str
    question: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]

    def as_record(self) -> dict[str, Any]:
        """The column layout of the Hub `squad` dataset."""
        return {
            "id": self.id,
            "title": self.title,
            "context": self.context,
            "question": self.question,
            "answers": {"text": list(self.answer_texts), "answer_start": list(self.answer_starts)},
        }


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise SquadFormatError(path, "file not found") from exc
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadFormatError(path, f"not readable SQuAD JSON: {exc}") from exc


def load_squad(path: str | Path, require_answers: bool = True) -> list[SquadExample]:
    """All questions of a SQuAD v1.1 file, validated, in file order."""
    return parse_squad(read_json(path), path, require_answers=require_answers)


def parse_squad(raw: Any, path: str | Path = "<memory>", require_answers: bool = True) -> list[SquadExample]:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise SquadFormatError(path, "top level must be an object with a 'data' list")
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for a, article in enumerate(raw["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise SquadFormatError(path, f"data[{a}] must have a 'paragraphs' list")
        title = article.get("title", "")
        for p, paragraph in enumerate(article["paragraphs"]):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not isinstance(paragraph.get("qas"), list):
                raise SquadFormatError(path, f"data[{a}].paragraphs[{p}] needs a 'context' string and a 'qas' list")
            for qa in paragraph["qas"]:
                examples.append(_parse_question(qa, context, title, path, seen, require_answers))
    return examples


def _parse_question(qa: Any, context: str, title: str, path, seen: set[str], require_answers: bool) -> SquadExample:
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str):
        raise SquadFormatError(path, f"a question in paragraph {context[:40]!r}... has no string 'id'")
    qid = qa["id"]
    if qid in seen:
        raise SquadFormatError(path, "duplicate id", qid)
    seen.add(qid)
    question = qa.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SquadFormatError(path, "'question' must be a non-empty string", qid)
    answers = qa.get("answers")
    if not isinstance(answers, list) or (require_answers and not answers):
        raise SquadFormatError(path, "'answers' must be a non-empty list", qid)
    texts, starts = [], []
    for i, answer in enumerate(answers):
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not text:
            raise SquadFormatError(path, f"answers[{i}].text must be a non-empty string", qid)
        if isinstance(start, bool) or not isinstance(start, int):
            raise SquadFormatError(path, f"answers[{i}].answer_start must be an integer", qid)
        if context[start : start + len(text)] != text:
            found = context[max(start, 0) : max(start, 0) + len(text)]
            raise SquadFormatError(
                path, f"answers[{i}].answer_start={start} does not index its text {text!r} (found {found!r})", qid
            )
        texts.append(text)
        starts.append(start)
    return SquadExample(qid, title, context, question, tuple(texts), tuple(starts))


def references(examples: list[SquadExample]) -> dict[str, list[str]]:
    """Question id -> reference answer texts, for scoring."""
    return {e.id: list(e.answer_texts) for e in examples}


def load_split(data_file: str | None, dataset_name: str | None, split: str, limit: int | None) -> list[SquadExample]:
    """One split from a local file, or from the Hub for online users."""
    if data_file:
        examples = load_squad(data_file)
    elif dataset_name:
        from datasets import load_dataset  # online users only; never in tests or CI

        rows = load_dataset(dataset_name, split=split)
        examples = [
            SquadExample(r["id"], r["title"], r["context"], r["question"],
                         tuple(r["answers"]["text"]), tuple(r["answers"]["answer_start"]))
            for r in rows
        ]
    else:
        raise ValueError(f"no data file and no dataset name for split {split!r}")
    return examples[:limit] if limit else examples


def split_heldout_articles(
    examples: list[SquadExample], fraction: float, seed: int
) -> tuple[list[SquadExample], list[SquadExample], list[str]]:
    """(kept, held out, held-out titles): a seeded share of whole articles, never single questions.

    Holding out articles (not questions) keeps their paragraphs unseen, so a threshold calibrated on
    them behaves as it will on new documents.
    """
    if fraction <= 0:
        return list(examples), [], []
    titles = sorted({e.title for e in examples})
    count = max(1, round(fraction * len(titles)))
    held = set(random.Random(seed).sample(titles, count))
    kept = [e for e in examples if e.title not in held]
    heldout = [e for e in examples if e.title in held]
    return kept, heldout, sorted(held)


def hold_out_titles(
    examples: list[SquadExample], titles: list[str]
) -> tuple[list[SquadExample], list[SquadExample], list[str]]:
    """(kept, held out, titles): exactly the named articles held out, as split_heldout_articles does."""
    held = set(titles)
    return [e for e in examples if e.title not in held], [e for e in examples if e.title in held], sorted(held)


UNANSWERABLE_SUFFIX = "#unanswerable"


def pair_unanswerable(examples: list[SquadExample], fraction: float, seed: int) -> tuple[list[SquadExample], int]:
    """Synthetic unanswerable questions: a seeded share of the questions, each paired with another
    paragraph of its own article that contains none of its answer texts (compared case-folded).

    Returns (new examples with no answers, questions drawn that had no such paragraph).
    """
    if fraction <= 0 or not examples:
        return [], 0
    paragraphs: dict[str, dict[str, None]] = {}  # title -> its contexts, in file order
    for e in examples:
        paragraphs.setdefault(e.title, {})[e.context] = None
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(examples)), round(fraction * len(examples))))
    paired, without_partner = [], 0
    for index in chosen:
        e = examples[index]
        answers = [text.casefold() for text in e.answer_texts]
        candidates = [c for c in paragraphs[e.title]
                      if c != e.context and not any(a in c.casefold() for a in answers)]
        if not candidates:
            without_partner += 1
            continue
        paired.append(SquadExample(e.id + UNANSWERABLE_SUFFIX, e.title, rng.choice(candidates), e.question, (), ()))
    return paired, without_partner
