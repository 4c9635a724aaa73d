"""Label Studio's JSON export into the feedback store, for teams that already label there.

    python -m feedback.label_studio EXPORT.json [--url URL] [--question-field question] [--context-field text]
    make feedback-import FILE=export.json [FEEDBACK_URL=...]

A task holds the question and the context in its data (fields named by the options) and, in each
annotation that was not cancelled, span labels (`"type": "labels"`) on the context: each span is a
right answer and becomes a `correct` item (source `label-studio`). An annotation with no span but a
choice naming the question unanswerable (`"type": "choices"`, e.g. "Not in the text") becomes an
`unanswerable` item. Label Studio counts offsets in UTF-16 code units, as browsers do; they are
turned into the code points the service counts, and checked against the span's text when the
export has it. A task that cannot be read is reported by its id and field, and nothing of it is
stored. Prints a JSON report; exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedback.store import DEFAULT_URL, FeedbackError, FeedbackItem, FeedbackStore

UNANSWERABLE_CHOICES = frozenset({"unanswerable", "not in the text", "no answer", "impossible"})


def utf16_to_code_points(text: str, offset: int) -> int:
    """The code-point index of a UTF-16 offset into `text`."""
    units = 0
    for index, char in enumerate(text):
        if units >= offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(text)


@dataclass
class Imported:
    items: list[FeedbackItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tasks: int = 0
    cancelled: int = 0


def _span(context: str, value: dict, where: str) -> tuple[int, int]:
    start, end = value.get("start"), value.get("end")
    if isinstance(start, bool) or not isinstance(start, int) or isinstance(end, bool) or not isinstance(end, int):
        raise FeedbackError(f"{where}.value", f"start and end must be integers, got {start!r} and {end!r}")
    start, end = utf16_to_code_points(context, start), utf16_to_code_points(context, end)
    text = value.get("text")
    if isinstance(text, str) and context[start:end] != text:
        raise FeedbackError(f"{where}.value.text", f"{text[:40]!r} is not the context's text at [{start}, {end})")
    return start, end


def items_from_export(tasks: Any, question_field: str = "question", context_field: str = "text") -> Imported:
    result = Imported()
    if not isinstance(tasks, list):
        result.problems.append("the export must be a JSON list of tasks (Label Studio's JSON format)")
        return result
    for number, task in enumerate(tasks):
        result.tasks += 1
        task_id = task.get("id", number) if isinstance(task, dict) else number
        where = f"task {task_id}"
        try:
            data = task.get("data") if isinstance(task, dict) else None
            if not isinstance(data, dict):
                raise FeedbackError(f"{where}.data", "missing: not a Label Studio task")
            question, context = data.get(question_field), data.get(context_field)
            for name, value in ((question_field, question), (context_field, context)):
                if not isinstance(value, str) or not value.strip():
                    raise FeedbackError(f"{where}.data.{name}", "must be a non-empty string (see --question-field "
                                        "and --context-field)")
            found: list[FeedbackItem] = []
            for a, annotation in enumerate(task.get("annotations") or []):
                if annotation.get("was_cancelled"):
                    result.cancelled += 1
                    continue
                spans, unanswerable = [], False
                for r, region in enumerate(annotation.get("result") or []):
                    here = f"{where}.annotations[{a}].result[{r}]"
                    if region.get("type") == "labels":
                        spans.append(_span(context, region.get("value") or {}, here))
                    elif region.get("type") == "choices":
                        choices = {str(c).strip().lower() for c in (region.get("value") or {}).get("choices", [])}
                        unanswerable |= bool(choices & UNANSWERABLE_CHOICES)
                found += [FeedbackItem(question, context, s, e, "correct", source="label-studio").validate()
                          for s, e in spans]
                if unanswerable and not spans:
                    found.append(FeedbackItem(question, context, 0, 0, "unanswerable", source="label-studio"))
            result.items += found
        except FeedbackError as exc:
            result.problems.append(str(exc))
    return result


def import_file(path: Path, url: str, question_field: str, context_field: str) -> dict:
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON export ({exc})") from None
    imported = items_from_export(tasks, question_field, context_field)
    store = FeedbackStore(url)
    store.migrate()
    ids = [store.add(item) for item in imported.items]
    return {"file": str(path), "tasks": imported.tasks, "stored": len(ids), "cancelled_annotations":
            imported.cancelled, "problems": [f"{path}: {p}" for p in imported.problems]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--question-field", default="question")
    parser.add_argument("--context-field", default="text")
    args = parser.parse_args(argv)
    try:
        report = import_file(args.file, args.url, args.question_field, args.context_field)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
