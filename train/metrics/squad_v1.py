"""SQuAD v1.1 exact match and F1, scored exactly as the official evaluate-v1.1.py.

Hand-written because `evaluate.load("squad")` fetches its script from the Hugging Face Hub,
which is unreachable here. The file is also an `evaluate` metric module:
`evaluate.load("train/metrics/squad_v1.py")` gives the same inputs and outputs as the Hub's
`squad` metric (predictions [{"id", "prediction_text"}], references [{"id", "answers"}]).
"""

from __future__ import annotations

import re
import string
import sys
from collections import Counter
from collections.abc import Iterable, Mapping

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def compute_score(references: Mapping[str, Iterable[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """EM and F1 on the 0-100 scale over every referenced question; unanswered ones score 0."""
    exact_match = f1 = 0.0
    total = 0
    for qid, ground_truths in references.items():
        total += 1
        if qid not in predictions:
            print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
            continue
        ground_truths = list(ground_truths)
        prediction = predictions[qid]
        exact_match += max(exact_match_score(prediction, gt) for gt in ground_truths)
        f1 += max(f1_score(prediction, gt) for gt in ground_truths)
    if total == 0:
        raise ValueError("no reference questions to score")
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


try:  # the `evaluate` wrapper is optional: scoring itself needs only the standard library
    import datasets
    import evaluate
except ImportError:  # pragma: no cover - exercised only in a serving-only install
    evaluate = None

if evaluate is not None:

    class SquadV1(evaluate.Metric):
        """`evaluate` metric module with the interface of the Hub's `squad` metric."""

        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description="SQuAD v1.1 exact match and F1 (official scoring).",
                citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, EMNLP 2016.",
                inputs_description="predictions: [{'id', 'prediction_text'}]; references: [{'id', 'answers'}]",
                features=datasets.Features(
                    {
                        "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                        "references": {
                            "id": datasets.Value("string"),
                            "answers": datasets.features.Sequence(
                                {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                            ),
                        },
                    }
                ),
            )

        def _compute(self, predictions, references):
            preds = {p["id"]: p["prediction_text"] for p in predictions}
            refs = {r["id"]: r["answers"]["text"] for r in references}
            return compute_score(refs, preds)
