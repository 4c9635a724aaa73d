"""`squad-qa`: answer questions from the command line with qa.QuestionAnswerer.

    squad-qa answer --question "When was it built?" --context "The lighthouse was built in 1874."
    squad-qa answer --model DIR --question Q --context-file article.txt --top-k 3
    squad-qa answer --model DIR --jsonl questions.jsonl > answers.jsonl [--on-error skip|fail]
    squad-qa answer --question Q --passage "first passage" --passage "second passage"
    squad-qa answer --question Q --passages-file passages.json [--max-windows 4]

One pair prints its JSON answer. Passages (--passage, repeated, or --passages-file: a JSON array of
strings or {"text", "id"} objects) are read as one document; the answer names its passage.
With --jsonl, each non-blank input line is a {"question", "context"}
object (an "id" is copied through: {"id", "result"}) and gets one output line, in order; a bad line
is reported on stderr with its line number and, with --on-error skip (the default), answered by
{"line": n, "error": "..."}, so no line is lost silently. Exit codes: 0 every
question answered, 1 some lines were skipped, 2 an error (bad arguments, model, or a bad line with
--on-error fail).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from qa.errors import ModelLoadError
from qa.model_dir import SHIPPED_MODEL_DIR
from qa.pipeline import BY_NAME, NoReadableText, QuestionAnswerer

CHUNK_LINES = 64  # lines answered per engine call: batches windows without holding a whole file


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="squad-qa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    answer = commands.add_parser("answer", help="answer one question, or a JSON-lines file of them")
    answer.add_argument("--model", default=SHIPPED_MODEL_DIR, help=f"model directory (default {SHIPPED_MODEL_DIR})")
    answer.add_argument("--backend", default="auto", help="auto, openvino-int8, onnx-int8, onnx-fp32 or torch")
    answer.add_argument("--question")
    context = answer.add_mutually_exclusive_group()
    context.add_argument("--context")
    context.add_argument("--context-file", type=Path, help="read the context from this UTF-8 file")
    context.add_argument("--passage", action="append", dest="passages", help="a passage (repeat for several)")
    context.add_argument("--passages-file", type=Path,
                         help='a JSON array of passages: strings or {"text", "id"} objects')
    answer.add_argument("--jsonl", type=Path, help='a file of {"question", "context"} lines (- for stdin)')
    answer.add_argument("--on-error", choices=("skip", "fail"), default="skip", help="what a bad --jsonl line does")
    for name in ("top_k", "max_answer_len", "max_seq_len", "doc_stride", "max_question_len"):
        answer.add_argument("--" + name.replace("_", "-"), type=int, default=BY_NAME[name].default,
                            help="as the pipeline's argument of that name")
    answer.add_argument("--max-windows", type=int, default=None,
                        help="windows read per context, best first by BM25 (0: all; default: the model's)")
    answer.add_argument("--handle-impossible-answer", action="store_true")
    answer.add_argument("--no-align-to-words", dest="align_to_words", action="store_false")
    args = parser.parse_args(argv)
    given = (args.context, args.context_file, args.passages, args.passages_file)
    if args.jsonl is None and (args.question is None or all(g is None for g in given)):
        parser.error("give --question with --context, --context-file, --passage or --passages-file, or --jsonl FILE")
    if args.jsonl is not None and (args.question or any(g is not None for g in given)):
        parser.error("--jsonl reads questions and contexts from the file; leave out --question/--context")
    return args


def pipeline_arguments(args: argparse.Namespace) -> dict:
    return {"top_k": args.top_k, "max_answer_len": args.max_answer_len, "max_seq_len": args.max_seq_len,
            "doc_stride": args.doc_stride, "max_question_len": args.max_question_len,
            "handle_impossible_answer": args.handle_impossible_answer, "align_to_words": args.align_to_words,
            "max_windows": args.max_windows}


def read_lines(handle: TextIO) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, the {"question", "context"} object or None, the problem or None) per non-blank line."""
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield number, None, f"not JSON: {exc}"
            continue
        if not isinstance(obj, dict):
            yield number, None, "not a JSON object"
            continue
        problem = next((f"'{k}' must be a non-empty string" for k in ("question", "context")
                        if not isinstance(obj.get(k), str) or not obj[k].strip()), None)
        yield number, (None if problem else obj), problem


def answer_jsonl(answerer: QuestionAnswerer, handle: TextIO, out: TextIO, options: dict, on_error: str,
                 progress=None) -> tuple[int, int]:
    """Answers every line; returns (answered, skipped). A bad line under on_error="fail" raises ValueError."""
    answered = skipped = 0
    chunk: list[tuple[int, dict]] = []

    def skip(number: int, problem: str) -> None:
        nonlocal skipped
        if on_error == "fail":
            raise ValueError(f"line {number}: {problem}")
        print(f"squad-qa: line {number} skipped: {problem}", file=sys.stderr)
        out.write(json.dumps({"line": number, "error": problem}) + "\n")
        skipped += 1

    def flush() -> None:
        nonlocal answered
        while chunk:
            try:
                results = answerer(question=[o["question"] for _, o in chunk],
                                   context=[o["context"] for _, o in chunk], **options)
            except NoReadableText as exc:  # that line alone: write what precedes it, skip it, go on
                good, (number, _), rest = chunk[: exc.index], chunk[exc.index], chunk[exc.index + 1 :]
                chunk[:] = good
                flush()
                skip(number, "the context has no readable text for the model")
                chunk[:] = rest
                continue
            if len(chunk) == 1:  # the pipeline's shape: one pair gives one result, not a list
                results = [results]
            for (_, obj), result in zip(chunk, results):
                record = {"id": obj["id"], "result": result} if "id" in obj else result
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            answered += len(chunk)
            if progress:
                progress(len(chunk))
            chunk.clear()

    for number, obj, problem in read_lines(handle):
        if problem:
            flush()  # keep the output in input order
            skip(number, problem)
            continue
        chunk.append((number, obj))
        if len(chunk) >= CHUNK_LINES:
            flush()
    flush()
    return answered, skipped


def read_passages(path: Path) -> list:
    """The JSON array of a --passages-file; a ValueError naming the file otherwise."""
    try:
        passages = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(passages, list):
        raise ValueError(f"{path}: must hold a JSON array of passages, got {type(passages).__name__}")
    return passages


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        answerer = QuestionAnswerer.from_model_dir(args.model, backend=args.backend)
        options = pipeline_arguments(args)
        if args.jsonl is None:
            if args.passages is not None or args.passages_file is not None:
                passages = args.passages if args.passages is not None else read_passages(args.passages_file)
                result = answerer(question=args.question, passages=passages, **options)
            else:
                context = args.context if args.context is not None else args.context_file.read_text(encoding="utf-8")
                result = answerer(question=args.question, context=context, **options)
            print(json.dumps(result, ensure_ascii=False))
            return 0
        handle = sys.stdin if str(args.jsonl) == "-" else args.jsonl.open(encoding="utf-8")
        with handle:
            bar = _progress_bar()
            answered, skipped = answer_jsonl(answerer, handle, sys.stdout, options, args.on_error,
                                             bar.update if bar is not None else None)
            if bar is not None:
                bar.close()
        print(f"squad-qa: answered {answered}, skipped {skipped}", file=sys.stderr)
        return 1 if skipped else 0
    except (ModelLoadError, ValueError, OSError) as exc:
        print(f"squad-qa: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # a bug: its traceback, and exit 2 (1 means "some lines skipped")
        traceback.print_exc()
        return 2


def _progress_bar():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the runtime image has no tqdm
        return None
    return tqdm(desc="answer", unit="q", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
