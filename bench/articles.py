"""Whole-document questions: each SQuAD question asked against its whole article.

    python -m bench.articles --model DIR --data dev-v1.1.json.gz [--k 0,1,2,4,8,16] [--sample N]
    python -m bench.articles --model DIR --data train.json.gz --titles HELDOUT.json ...   (choices)
    make bench-articles [MODEL=dir] [K=...] [SAMPLE=n] [DATA=file] [TITLES=file]

An article's paragraphs are joined by blank lines and every answer offset is shifted by the
characters before its paragraph, so a question's references are unchanged and a prediction can
come from any paragraph. Each strategy (max_windows=k; 0 reads every window) answers the same
questions through QAEngine, as the service does, one question at a time; the report gives EM/F1,
the model windows read per question, and p50/p95 ms per question.
Choose k and thresholds on the held-out train articles (--titles), never on dev.

--abstention adds, per k, with handle_impossible_answer on: the share of these (answerable) questions
that abstain, and the share that abstain when asked against another article, which holds no answer.
--scores window-softmax ranks spans by start and end log-probabilities normalised within each window
(the old pipeline's scores) instead of raw logits, to see whether raw logits compare across windows.
--plot draws F1 and p50 against k.
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

import numpy as np

from qa import ranking
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


def window_log_softmax(logits: np.ndarray, window) -> np.ndarray:
    """Log-probabilities over the window's own tokens: scores normalised per window."""
    own = np.asarray(logits[: len(window)], dtype=np.float64)
    return own - (own.max() + np.log(np.exp(own - own.max()).sum()))


def ask(engine: QAEngine, question: str, context: str, options: AnswerOptions, params, scores: str):
    windows = engine.windows([question], [context], params)
    starts, ends = engine.window_logits(windows)
    if scores == "window-softmax":
        starts = [window_log_softmax(s, w) for s, w in zip(starts, windows)]
        ends = [window_log_softmax(e, w) for e, w in zip(ends, windows)]
    return engine.decode([context], windows, starts, ends, options, params)[0], len(windows)


def run_strategy(engine: QAEngine, examples: list[SquadExample], max_windows: int, scores: str = "raw",
                 others: dict[str, str] | None = None) -> dict:
    """One question at a time, as a request would be answered; windows counted, time per question.
    With `others` (question id -> another article), abstention is measured too."""
    options = AnswerOptions(max_windows=max_windows)
    params = engine.resolve(options)
    predictions: dict[str, str] = {}
    read: list[int] = []
    elapsed_ms: list[float] = []
    for example in examples:
        began = time.perf_counter()
        answers, windows = ask(engine, example.question, example.context, options, params, scores)
        elapsed_ms.append((time.perf_counter() - began) * 1000)
        read.append(windows)
        predictions[example.id] = answers[0].text if answers else ""
    score = compute_score(references(examples), predictions)
    result = {
        "predictions": predictions,  # compared across strategies, not written out
        "max_windows": max_windows,
        "scores": scores,
        "exact_match": round(score["exact_match"], 2),
        "f1": round(score["f1"], 2),
        "windows_per_question": round(statistics.fmean(read), 2),
        "p50_ms": round(percentile(elapsed_ms, 50), 1),
        "p95_ms": round(percentile(elapsed_ms, 95), 1),
    }
    if others is not None:
        abstain = replace(options, handle_impossible_answer=True)
        params = engine.resolve(abstain)
        own = [ask(engine, e.question, e.context, abstain, params, scores)[0] for e in examples]
        other = [ask(engine, e.question, others[e.id], abstain, params, scores)[0] for e in examples]
        result["abstained_own_article_pct"] = round(100 * statistics.fmean(not a or a[0].text == "" for a in own), 2)
        result["abstained_other_article_pct"] = round(100 * statistics.fmean(not a or a[0].text == "" for a in other),
                                                      2)
    return result


def other_articles(examples: list[SquadExample]) -> dict[str, str]:
    """Each question's 'wrong document': the next article in order (its own answer cannot be there)."""
    articles = list(dict.fromkeys(e.context for e in examples))
    following = {article: articles[(i + 1) % len(articles)] for i, article in enumerate(articles)}
    return {e.id: following[e.context] for e in examples}


def plot(report: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in report["strategies"] if r["scores"] == "raw"), key=lambda r: r["windows_per_question"])
    figure, left = plt.subplots(figsize=(7, 4))
    left.plot([r["windows_per_question"] for r in rows], [r["f1"] for r in rows], "o-", color="tab:blue")
    for r in rows:
        left.annotate(f"k={r['max_windows'] or 'all'}", (r["windows_per_question"], r["f1"]),
                      textcoords="offset points", xytext=(4, -12), fontsize=8)
    left.set_xscale("log")
    left.set_xticks([1, 2, 4, 8, 16, 32, 64])
    left.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("model windows read per question (log)")
    left.set_ylabel("F1", color="tab:blue")
    right = left.twinx()
    right.plot([r["windows_per_question"] for r in rows], [r["p50_ms"] for r in rows], "s--", color="tab:red")
    right.set_ylabel("p50 ms per question", color="tab:red")
    right.set_yscale("log")
    left.set_title(f"{report['data']}: whole articles, {report['questions']} questions, {report['backend']}\n"
                   f"{report['machine']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a SQuAD v1.1 file")
    parser.add_argument("--titles", type=Path, help="a JSON file whose 'titles' lists the articles to use")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--k", default="0,1,2,4,8,16", help="max_windows values to run; 0 reads every window")
    parser.add_argument("--sample", type=int, help="a seeded sample of this many questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--near-tie", type=float, help="the near-tie share to try (qa/ranking.py NEAR_TIE; "
                        "1 reads only exact ties)")
    parser.add_argument("--scores", default="raw", help="raw, window-softmax, or both (comma-separated)")
    parser.add_argument("--abstention", action="store_true", help="also measure abstention (see above)")
    parser.add_argument("--paragraphs", action="store_true",
                        help="ask against each question's own paragraph instead (SQuAD as is), and count the "
                             "predictions identical to those of the first strategy")
    parser.add_argument("--out", type=Path, default=Path("bench/long-documents/articles.json"))
    parser.add_argument("--plot", type=Path, help="draw F1 and p50 against windows read into this PNG")
    args = parser.parse_args(argv)

    if args.near_tie is not None:  # an ablation: the rule's share, for this run only
        ranking.NEAR_TIE = args.near_tie
    titles = set(json.loads(args.titles.read_text())["titles"]) if args.titles else None
    loaded = load_squad(args.data)
    built = article_examples(loaded, titles)
    examples = built.examples
    if args.paragraphs:  # the same questions against their own paragraph, as SQuAD asks them
        examples = [e for e in loaded if titles is None or e.title in titles]
    if args.sample and args.sample < len(examples):
        examples = random.Random(args.seed).sample(examples, args.sample)
    engine = QAEngine.from_model_dir(args.model, backend=args.backend)
    others = other_articles(examples) if args.abstention else None
    report = {
        "machine": machine(),
        "near_tie": ranking.NEAR_TIE,
        "model": str(args.model),
        "backend": engine.backend.name,
        "data": args.data.name,
        "articles": built.articles,
        "contexts": "paragraphs" if args.paragraphs else "articles",
        "article_characters_median": int(statistics.median(built.characters)),
        "questions": len(examples),
        "strategies": [],
    }
    print(f"{built.articles} articles (median {report['article_characters_median']:,} characters), "
          f"{len(examples)} questions, backend {report['backend']}")
    first: dict[str, str] = {}
    for scores in args.scores.split(","):
        for k in [int(value) for value in args.k.split(",")]:
            result = run_strategy(engine, examples, k, scores, others)
            predictions = result.pop("predictions")
            first = first if report["strategies"] else predictions
            result["same_predictions_as_first_pct"] = round(
                100 * statistics.fmean(predictions[i] == first[i] for i in predictions), 2)
            report["strategies"].append(result)
            abstention = (f"  abstains: own {result['abstained_own_article_pct']:5.1f} %, other article "
                          f"{result['abstained_other_article_pct']:5.1f} %" if others else "")
            print(f"  {scores} max_windows {k:>3}: EM {result['exact_match']:6.2f}  F1 {result['f1']:6.2f}  "
                  f"windows/question {result['windows_per_question']:6.2f}  p50 {result['p50_ms']:8.1f} ms  "
                  f"p95 {result['p95_ms']:8.1f} ms  same as first {result['same_predictions_as_first_pct']:6.2f} %"
                  f"{abstention}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    if args.plot:
        plot(report, args.plot)
        print(f"plot: {args.plot}")
    return 0


def machine() -> str:
    """The CPU, its relevant flags and the cores, for the report."""
    from train.hardware import cpu_description

    return cpu_description()


if __name__ == "__main__":
    sys.exit(main())
