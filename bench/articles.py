"""Whole-document questions: each SQuAD question asked against its whole article.

    python -m bench.articles --model DIR --data dev-v1.1.json.gz [--k 0,1,2,4,8,16] [--sample N]
    python -m bench.articles --model DIR --data train.json.gz --titles HELDOUT.json ...   (choices)
    make bench-articles [MODEL=dir] [K=...] [SAMPLE=n]

An article's paragraphs are joined by blank lines and every answer offset is shifted by the
characters before its paragraph, so a question's references are unchanged and a prediction can
come from any paragraph. Each strategy (max_windows=k; 0 reads every window) answers the same
questions through QAEngine, as the service does, one question at a time; the report gives EM/F1,
the model windows read per question, and p50/p95 ms per question.
Choose k and thresholds on the held-out train articles (--titles), never on dev.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from qa.engine import QAEngine
from qa.params import AnswerOptions
from train.data import SquadExample, load_squad, references
from train.metrics.squad_v1 import compute_score

PARAGRAPH_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ArticleSet:
    examples: list[SquadExample]  # context: the whole article; answer_starts shifted into it
    articles: int
    characters: list[int]  # per article


def article_examples(examples: list[SquadExample], titles: set[str] | None = None) -> ArticleSet:
    """The examples with their article as context: paragraphs in file order, joined by blank lines."""
    paragraphs: dict[str, dict[str, None]] = {}
    for example in examples:
        if titles is None or example.title in titles:
            paragraphs.setdefault(example.title, {})[example.context] = None
    offsets: dict[tuple[str, str], int] = {}
    articles: dict[str, str] = {}
    for title, contexts in paragraphs.items():
        position = 0
        for context in contexts:
            offsets[title, context] = position
            position += len(context) + len(PARAGRAPH_SEPARATOR)
        articles[title] = PARAGRAPH_SEPARATOR.join(contexts)
    shifted = [
        replace(
            example,
            context=articles[example.title],
            answer_starts=tuple(start + offsets[example.title, example.context] for start in example.answer_starts),
        )
        for example in examples
        if example.title in articles
    ]
    return ArticleSet(shifted, len(articles), [len(text) for text in articles.values()])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_strategy(engine: QAEngine, examples: list[SquadExample], max_windows: int) -> dict:
    """One question at a time, as a request would be answered; windows counted, time per question."""
    options = AnswerOptions(max_windows=max_windows)
    params = engine.resolve(options)
    predictions: dict[str, str] = {}
    read: list[int] = []
    elapsed_ms: list[float] = []
    for example in examples:
        began = time.perf_counter()
        windows = engine.windows([example.question], [example.context], params)
        starts, ends = engine.window_logits(windows)
        answers = engine.decode([example.context], windows, starts, ends, options, params)[0]
        elapsed_ms.append((time.perf_counter() - began) * 1000)
        read.append(len(windows))
        predictions[example.id] = answers[0].text if answers else ""
    score = compute_score(references(examples), predictions)
    return {
        "max_windows": max_windows,
        "exact_match": round(score["exact_match"], 2),
        "f1": round(score["f1"], 2),
        "windows_per_question": round(statistics.fmean(read), 2),
        "p50_ms": round(percentile(elapsed_ms, 50), 1),
        "p95_ms": round(percentile(elapsed_ms, 95), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a SQuAD v1.1 file")
    parser.add_argument("--titles", type=Path, help="a JSON file whose 'titles' lists the articles to use")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--k", default="0,1,2,4,8,16", help="max_windows values to run; 0 reads every window")
    parser.add_argument("--sample", type=int, help="a seeded sample of this many questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/articles.json"))
    args = parser.parse_args(argv)

    titles = set(json.loads(args.titles.read_text())["titles"]) if args.titles else None
    built = article_examples(load_squad(args.data), titles)
    examples = built.examples
    if args.sample and args.sample < len(examples):
        examples = random.Random(args.seed).sample(examples, args.sample)
    engine = QAEngine.from_model_dir(args.model, backend=args.backend)
    report = {
        "model": str(args.model),
        "backend": engine.backend.name,
        "data": args.data.name,
        "articles": built.articles,
        "article_characters_median": int(statistics.median(built.characters)),
        "questions": len(examples),
        "strategies": [],
    }
    print(f"{built.articles} articles (median {report['article_characters_median']:,} characters), "
          f"{len(examples)} questions, backend {report['backend']}")
    for k in [int(value) for value in args.k.split(",")]:
        result = run_strategy(engine, examples, k)
        report["strategies"].append(result)
        print(f"  max_windows {k:>3}: EM {result['exact_match']:6.2f}  F1 {result['f1']:6.2f}  "
              f"windows/question {result['windows_per_question']:6.2f}  p50 {result['p50_ms']:8.1f} ms  "
              f"p95 {result['p95_ms']:8.1f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
