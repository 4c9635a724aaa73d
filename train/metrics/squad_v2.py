"""SQuAD 2.0 exact match and F1 with unanswerable questions, scored as the official evaluate-v2.0.py.

Hand-written for the same reason as squad_v1.py (`evaluate.load("squad_v2")` needs the Hub).
Differences from v1.1 scoring: a question with no answer has the single gold answer "", and when
either the gold or the predicted answer normalises to no tokens, F1 is 1 if both do, else 0.
With no-answer probabilities, a prediction counts as "no answer" when its probability exceeds
`na_prob_thresh`, and `best_exact`/`best_f1` give the scores at the best threshold and that
threshold (the official search: questions sorted by probability, cumulative gain).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from train.metrics.squad_v1 import normalize_answer


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def f1_v2(gold: str, prediction: str) -> float:
    gold_tokens, predicted_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    same = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def raw_scores(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]):
    """Per-question (exact, f1) before any threshold; references map id -> answer texts ([] = unanswerable)."""
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[0]!r}")
    exact, f1 = {}, {}
    for qid, texts in references.items():
        golds = [t for t in texts if normalize_answer(t)] or [""]
        prediction = predictions[qid]
        exact[qid] = max(float(normalize_answer(g) == normalize_answer(prediction)) for g in golds)
        f1[qid] = max(f1_v2(g, prediction) for g in golds)
    return exact, f1


def best_threshold(references, predictions, scores, na_probs) -> tuple[float, float]:
    """(score at the best no-answer threshold on the 0-100 scale, that threshold)."""
    has_answer = {qid: bool(texts) for qid, texts in references.items()}
    current = best = sum(1 for v in has_answer.values() if not v)  # everything abstains
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        current += scores[qid] if has_answer[qid] else (-1 if predictions[qid] else 0)
        if current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), threshold


def compute_score_v2(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """exact, f1, total, HasAns_*, NoAns_* (and best_* with na_probs), keyed as the official script."""
    if not references:
        raise ValueError("no reference questions to score")
    exact_raw, f1_raw = raw_scores(references, predictions)
    probabilities = na_probs if na_probs is not None else {qid: 0.0 for qid in predictions}
    has_answer = {qid: bool(texts) for qid, texts in references.items()}

    def thresholded(scores):
        return {qid: (float(not has_answer[qid]) if probabilities[qid] > na_prob_thresh else s)
                for qid, s in scores.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def summary(ids):
        return {"exact": 100.0 * sum(exact[q] for q in ids) / len(ids),
                "f1": 100.0 * sum(f1[q] for q in ids) / len(ids), "total": len(ids)}

    result = summary(list(exact))
    for prefix, ids in (("HasAns", [q for q, v in has_answer.items() if v]),
                        ("NoAns", [q for q, v in has_answer.items() if not v])):
        if ids:
            result.update({f"{prefix}_{k}": v for k, v in summary(ids).items()})
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = best_threshold(references, predictions, exact_raw, na_probs)
        result["best_f1"], result["best_f1_thresh"] = best_threshold(references, predictions, f1_raw, na_probs)
    return result
