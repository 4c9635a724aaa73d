"""Feedback as training data: the store's items as SQuAD JSON the project's own loader accepts.

    python -m feedback.export [--url URL] [--out DIR]
    make feedback-export [FEEDBACK_URL=...] [OUT=outputs/feedback]

- `correct` items: their answer is a right answer; `wrong` items with a correction: the corrected
  span is. Both go to DIR/feedback-squad.json (SQuAD v1.1). A question with several right spans keeps
  them all, as SQuAD's dev set keeps several references; the most often confirmed comes first (ties:
  the earliest), and training reads the first.
- `unanswerable` items go to DIR/feedback-unanswerable.json (SQuAD 2.0 style, no answers), for
  calibrating the no-answer threshold, never for span training.
- `wrong` items without a correction say what is not the answer but not what is: counted, left out.
- Items with the same question and context are merged into one question. Conflicts are reported
  and left out: a span one item calls right and another wrong, or one item saying unanswerable and
  another giving a span.
Prints a JSON report of what was written, merged and left out. Exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from feedback.store import DEFAULT_URL, FeedbackStore

SQUAD_FILE = "feedback-squad.json"
UNANSWERABLE_FILE = "feedback-unanswerable.json"
TITLE = "feedback"


@dataclass
class Export:
    squad: dict
    unanswerable: dict
    report: dict = field(default_factory=dict)


def _question_id(question: str, context: str) -> str:
    return "feedback-" + hashlib.sha256(f"{question}\x1f{context}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _right_span(row: dict) -> tuple[int, int] | None:
    if row["verdict"] == "correct":
        return row["answer_start"], row["answer_end"]
    if row["verdict"] == "wrong" and row["correction_start"] is not None:
        return row["correction_start"], row["correction_end"]
    return None


def build_export(rows: Iterable[dict]) -> Export:
    """SQuAD v1.1 (answerable) and SQuAD 2.0-style (unanswerable) data from stored feedback rows."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    total = 0
    for row in rows:
        groups[(row["question"], row["context"])].append(row)
        total += 1
    answerable: dict[str, list[dict]] = defaultdict(list)  # context -> qas
    unanswerable: dict[str, list[dict]] = defaultdict(list)
    conflicts, wrong_without_correction, merged, several = [], 0, 0, 0
    for (question, context), items in groups.items():
        merged += len(items) - 1
        votes = Counter(span for item in items if (span := _right_span(item)) is not None)
        called_wrong = {(item["answer_start"], item["answer_end"]) for item in items if item["verdict"] == "wrong"}
        says_unanswerable = any(item["verdict"] == "unanswerable" for item in items)
        ids = [item["id"] for item in items]
        disputed = sorted(set(votes) & called_wrong)
        if disputed or (votes and says_unanswerable):
            found = ([f"{context[s:e]!r} right and wrong" for s, e in disputed]
                     or sorted(f"{context[s:e]!r}" for s, e in votes)) + (["unanswerable"] if says_unanswerable else [])
            conflicts.append({"items": ids, "question": question[:200], "verdicts": found})
            continue
        qid = _question_id(question, context)
        if votes:
            spans = sorted(votes, key=lambda span: (-votes[span], span))
            several += len(spans) > 1
            answerable[context].append({"id": qid, "question": question, "feedback_items": ids,
                                        "answers": [{"text": context[s:e], "answer_start": s} for s, e in spans]})
        elif says_unanswerable:
            unanswerable[context].append({"id": qid, "question": question, "feedback_items": ids, "answers": [],
                                          "is_impossible": True})
        else:
            wrong_without_correction += len(items)

    def squad(by_context: dict[str, list[dict]], version: str) -> dict:
        return {"version": version, "data": [{"title": TITLE, "paragraphs": [
            {"context": context, "qas": qas} for context, qas in by_context.items()]}]}

    report = {"items": total, "questions": len(groups), "merged_duplicates": merged,
              "answerable_questions": sum(len(q) for q in answerable.values()),
              "questions_with_several_answers": several,
              "unanswerable_questions": sum(len(q) for q in unanswerable.values()),
              "left_out_wrong_without_correction": wrong_without_correction,
              "conflicts": conflicts}
    return Export(squad(answerable, "1.1"), squad(unanswerable, "v2.0"), report)


def export(url: str, out: Path) -> dict:
    rows: list[dict] = []
    store = FeedbackStore(url)
    after = 0
    while page := store.items(after=after, limit=1000):
        rows.extend(page)
        after = page[-1]["id"]
    result = build_export(rows)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in ((SQUAD_FILE, result.squad), (UNANSWERABLE_FILE, result.unanswerable)):
        (out / name).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return result.report | {"squad_file": str(out / SQUAD_FILE), "unanswerable_file": str(out / UNANSWERABLE_FILE)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the feedback database (default {DEFAULT_URL})")
    parser.add_argument("--out", type=Path, default=Path("outputs/feedback"))
    args = parser.parse_args(argv)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        report = export(args.url, args.out)
    except (SQLAlchemyError, OSError) as exc:  # one line naming the problem: a database that cannot be read
        print(f"error: {args.url.split('@')[-1]}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
