"""Error analysis of a model on a SQuAD v1.1 file: F1 by question type, context length and answer
length, the kinds of error, and typical errors of each kind.

    python -m train.analyze --model DIR --data dev-v1.1.json.gz --out docs/analysis [--predictions FILE]

Without --predictions the model is evaluated now with the served backend (`auto`), through the same
engine as `make evaluate`. Writes OUT/error_analysis.md (tables) and OUT/error_analysis.png (charts).
Per-question scores are the official v1.1 ones (train/metrics/squad_v1.py), max over the references.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from qa.errors import ModelLoadError
from qa.model_dir import TOKENIZER_FILE, load_params
from qa.windowing import Windower
from train.cli import positive_int, run_stage
from train.data import SquadExample, SquadFormatError, load_squad
from train.metrics.squad_v1 import exact_match_score, f1_score, normalize_answer

QUESTION_WORDS = ("what", "who", "when", "where", "which", "how", "why")
CONTEXT_BUCKETS = ((0, 100), (101, 150), (151, 200), (201, 300), (301, 10**9))  # context tokens
ANSWER_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 10**9))  # words of the first reference
EXAMPLES_PER_KIND = 2
_NUMBER = re.compile(r"\d")
_MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"}


@dataclass(frozen=True)
class Scored:
    example: SquadExample
    prediction: str
    em: float
    f1: float
    context_tokens: int
    windows: int

    @property
    def gold(self) -> str:
        """The reference the prediction is closest to (ties: the first)."""
        return max(self.example.answer_texts, key=lambda gold: f1_score(self.prediction, gold))


def question_type(question: str) -> str:
    """The first of QUESTION_WORDS in the question ("In which year ..." is "which"), else "other"."""
    for word in re.findall(r"[a-z]+", question.lower()):
        if word in QUESTION_WORDS:
            return word
    return "other"


def bucket_label(value: int, buckets: Sequence[tuple[int, int]], unit: str) -> str:
    for low, high in buckets:
        if low <= value <= high:
            if high >= 10**9:
                return f"> {low - 1} {unit}"
            if low == high:
                return f"{low} {unit.removesuffix('s') if low == 1 else unit}"
            return f"{low}-{high} {unit}"
    raise ValueError(f"{value} is in no bucket")


def _looks_like_entity(text: str) -> bool:
    words = text.split()
    return bool(words) and all(w[:1].isupper() or _NUMBER.search(w) for w in words if len(w) > 3)


def _looks_like_number_or_date(text: str) -> bool:
    return bool(_NUMBER.search(text)) or any(w in _MONTHS for w in normalize_answer(text).split())


def error_kind(prediction: str, gold: str) -> str:
    """A rule-based label for a wrong prediction against its closest reference."""
    if not prediction.strip():
        return "no answer"
    p, g = normalize_answer(prediction), normalize_answer(gold)
    # Raw containment too: the official normalisation deletes "/" and "-", so "nitrogen" shares no
    # word with "nitrogen/oxygen mixture" although it is a boundary error.
    raw_p, raw_g = prediction.lower().strip(), gold.lower().strip()
    if g in p or raw_g in raw_p:
        return "boundary: too long"
    if p in g or raw_p in raw_g:
        return "boundary: too short"
    if f1_score(prediction, gold) > 0:
        return "partial overlap"
    if _looks_like_number_or_date(gold) and _looks_like_number_or_date(prediction):
        return "wrong number or date"
    if _looks_like_entity(gold) and _looks_like_entity(prediction):
        return "wrong entity"
    return "wrong span"


def score(examples: Sequence[SquadExample], predictions: dict[str, str], tokenizer: Tokenizer,
          windower: Windower) -> list[Scored]:
    tokenizer.no_truncation()
    context_tokens = {c: len(tokenizer.encode(c, add_special_tokens=False).ids) for c in {e.context for e in examples}}
    windows_per_example = Counter(w.example_index for w in windower.windows([e.question for e in examples],
                                                                            [e.context for e in examples]))
    scored = []
    for index, example in enumerate(examples):
        prediction = predictions.get(example.id, "")
        scored.append(Scored(example, prediction,
                             max(exact_match_score(prediction, gold) for gold in example.answer_texts),
                             max(f1_score(prediction, gold) for gold in example.answer_texts),
                             context_tokens[example.context], windows_per_example[index]))
    return scored


def group_table(scored: Sequence[Scored], key: Callable[[Scored], str], order: Sequence[str] | None = None) -> list:
    groups: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        groups[key(s)].append(s)
    names = [n for n in (order or sorted(groups)) if n in groups]
    return [(name, len(groups[name]), 100 * sum(s.em for s in groups[name]) / len(groups[name]),
             100 * sum(s.f1 for s in groups[name]) / len(groups[name])) for name in names]


def analyze(scored: Sequence[Scored], seed: int = 0) -> dict:
    context_order = [bucket_label(low, CONTEXT_BUCKETS, "tokens") for low, _ in CONTEXT_BUCKETS]
    answer_order = [bucket_label(low, ANSWER_BUCKETS, "words") for low, _ in ANSWER_BUCKETS]
    errors = [s for s in scored if s.em < 1]
    kinds: dict[str, list[Scored]] = defaultdict(list)
    for s in errors:
        kinds[error_kind(s.prediction, s.gold)].append(s)
    rng = random.Random(seed)
    typical = {kind: rng.sample(items, min(EXAMPLES_PER_KIND, len(items))) for kind, items in kinds.items()}
    return {
        "questions": len(scored),
        "exact_match": 100 * sum(s.em for s in scored) / len(scored),
        "f1": 100 * sum(s.f1 for s in scored) / len(scored),
        "by_question_type": group_table(scored, lambda s: question_type(s.example.question),
                                        [*QUESTION_WORDS, "other"]),
        "by_context_length": group_table(scored, lambda s: bucket_label(s.context_tokens, CONTEXT_BUCKETS, "tokens"),
                                         context_order),
        "by_windows": group_table(scored, lambda s: "1 window" if s.windows == 1 else "2+ windows",
                                  ["1 window", "2+ windows"]),
        "by_answer_length": group_table(
            scored, lambda s: bucket_label(len(s.example.answer_texts[0].split()) or 1, ANSWER_BUCKETS, "words"),
            answer_order),
        "error_kinds": sorted(((kind, len(items), sum(s.f1 for s in items) / len(items)) for kind, items in
                               kinds.items()), key=lambda row: -row[1]),
        "typical": typical,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row) + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict, command: str, source: str) -> str:
    errors = sum(n for _, n, _ in report["error_kinds"])
    parts = [
        "# Error analysis",
        "",
        f"{source}: {report['questions']} questions, EM {report['exact_match']:.2f} / F1 {report['f1']:.2f}.",
        f"Made by `{command}`; do not edit by hand.",
        "",
        "## F1 by question type",
        "",
        "The first of what/who/when/where/which/how/why in the question.",
        "",
        _table(("type", "questions", "EM", "F1"), report["by_question_type"]),
        "",
        "## F1 by context length",
        "",
        "Context tokens (the model's tokenizer). A 384-token window holds about 360 context tokens beside the "
        "question; longer contexts are read in several overlapping windows.",
        "",
        _table(("context", "questions", "EM", "F1"), report["by_context_length"]),
        "",
        _table(("windows", "questions", "EM", "F1"), report["by_windows"]),
        "",
        "## F1 by answer length",
        "",
        "Words of the first reference answer.",
        "",
        _table(("answer", "questions", "EM", "F1"), report["by_answer_length"]),
        "",
        "## Kinds of error",
        "",
        f"The {errors} questions without an exact match, labelled by rules against the closest reference "
        "(train/analyze.py `error_kind`): boundary = the prediction contains the reference or lies inside it "
        "(normalised or lower-cased text); "
        "partial overlap = shares words otherwise; wrong number or date / wrong entity / wrong span = no word "
        "in common.",
        "",
        _table(("kind", "questions", "mean F1"), [(k, n, 100 * f) for k, n, f in report["error_kinds"]]),
        "",
        "## Typical errors",
        "",
        f"{EXAMPLES_PER_KIND} per kind, drawn with a fixed seed.",
        "",
        _table(("kind", "question", "reference", "prediction", "F1"),
               [(kind, _cell(s.example.question), _cell(s.gold), _cell(s.prediction), 100 * s.f1)
                for kind, _, _ in report["error_kinds"] for s in report["typical"][kind]]),
        "",
    ]
    return "\n".join(parts)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("question type", report["by_question_type"]), ("context tokens", report["by_context_length"]),
              ("answer words", report["by_answer_length"])]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for axis, (title, rows) in zip(axes, panels):
        labels = [f"{name if title == 'question type' else name.rsplit(' ', 1)[0]}\n{n}" for name, n, _, _ in rows]
        axis.bar(range(len(rows)), [f1 for *_, f1 in rows], color="#4c72b0")
        axis.axhline(report["f1"], color="#c44e52", linestyle="--", linewidth=1, label=f"all: {report['f1']:.1f}")
        axis.set_xticks(range(len(rows)), labels, fontsize=8)
        axis.set_title(f"F1 by {title} (questions below)")
        axis.set_ylim(0, 100)
        axis.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("F1")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(model_dir: str | Path, data: str | Path, out: str | Path, predictions_file: str | Path | None = None,
        limit: int | None = None, command: str = "python -m train.analyze") -> dict:
    model_dir, out = Path(model_dir), Path(out)
    examples = load_squad(data)
    if limit is not None:
        examples = examples[:limit]
    if predictions_file:
        predictions = json.loads(Path(predictions_file).read_text(encoding="utf-8"))
        if not isinstance(predictions, dict):
            raise ValueError(f"{predictions_file}: must be a JSON object of question id -> answer text")
        missing = sum(1 for e in examples if e.id not in predictions)
        if missing == len(examples):
            raise ValueError(f"{predictions_file}: no prediction for any of the {len(examples)} questions of {data}")
        if missing:
            print(f"warning: {missing} of {len(examples)} questions have no prediction in {predictions_file}; "
                  "they count as unanswered (F1 0)", file=sys.stderr)
        source = f"`{predictions_file}` on `{data}`"
    else:
        from qa.engine import QAEngine
        from train.evaluate import predict

        engine = QAEngine.from_model_dir(model_dir, backend="auto")
        predictions = predict(engine, examples, show_progress=True)
        source = f"`{model_dir}` ({engine.backend.name}) on `{data}`"
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    windower = Windower.from_params(tokenizer, load_params(model_dir))
    report = analyze(score(examples, predictions, tokenizer, windower))
    out.mkdir(parents=True, exist_ok=True)
    (out / "error_analysis.md").write_text(to_markdown(report, command, source), encoding="utf-8")
    plot(report, out / "error_analysis.png")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory (its tokenizer counts context tokens)")
    parser.add_argument("--data", required=True, help="SQuAD v1.1 JSON file (plain or .gz)")
    parser.add_argument("--out", required=True, help="folder for error_analysis.md and error_analysis.png")
    parser.add_argument("--predictions", help="a predictions.json to analyse instead of evaluating now")
    parser.add_argument("--limit", type=positive_int, default=None, help="the first N questions only")
    args = parser.parse_args(argv)
    command = f"make analyze MODEL={args.model}" + (f" PREDICTIONS={args.predictions}" if args.predictions else "")

    def stage() -> None:
        report = run(args.model, args.data, args.out, args.predictions, args.limit, command)
        print(f"{report['questions']} questions, EM {report['exact_match']:.2f} / F1 {report['f1']:.2f}; "
              f"wrote {Path(args.out) / 'error_analysis.md'} and error_analysis.png")

    return run_stage(stage, (ModelLoadError, SquadFormatError, OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
