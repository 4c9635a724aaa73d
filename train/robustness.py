"""How a model holds up on harder versions of the train articles it never saw.

    python -m train.robustness --model DIR [--backend B] [--limit N]

The questions come from the train articles the model's run held out (DIR/heldout_articles.json),
never from dev, so training choices can be made on these figures. Each question is read five ways,
all through the served decoder (train/calibrate.py score_pairs):
- own: its own paragraph (v1.1 EM/F1, abstention off);
- distractor: its paragraph with the article's most question-like other sentence inserted
  (EM/F1 and the change against own on the same questions);
- answer removed: its paragraph less the sentences holding its answers (on-topic, unanswerable);
- entity swapped: its own paragraph, the question with a name or number swapped for one of the
  article's that the paragraph never mentions (unanswerable, as SQuAD 2.0's entity swaps are);
- wrong: a paragraph of another held-out article.
Abstention figures are given at the served threshold (DIR/qa.json) and at the threshold the
served rule would choose here (own-paragraph abstention at most 1 %), with the threshold-free AUC
of the null margin separating answer-removed (and entity-swapped) questions from own ones and the
best SQuAD 2.0 F1 over own plus answer-removed questions. Writes DIR/robustness.json; exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.engine import QAEngine
from qa.errors import ModelLoadError
from qa.files import write_json
from qa.model_dir import HELDOUT_FILE, ROBUSTNESS_FILE, load_params
from train.calibrate import SEED, lowest_threshold_within, on_topic_unanswerable, rate, score_pairs, wrong_context_pairs
from train.cli import positive_int, run_stage
from train.config import ConfigError, model_config
from train.data import SquadExample, SquadFormatError, load_squad, references
from train.hard_examples import with_distractors
from train.metrics.squad_v1 import compute_score
from train.metrics.squad_v2 import compute_score_v2


def heldout_examples(model_dir: Path, limit: int | None = None) -> list[SquadExample]:
    """The questions of the train articles the model's run held out, in file order."""
    heldout_file = model_dir / HELDOUT_FILE
    try:
        titles = set(json.loads(heldout_file.read_text(encoding="utf-8"))["titles"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{heldout_file}: no held-out article titles ({exc})") from None
    config = model_config(model_dir)
    if not config.data.train_file:
        raise ConfigError(config.source, "data.train_file", "not set: the held-out articles come from it")
    examples = [e for e in load_squad(config.data.train_file) if e.title in titles]
    if not examples:
        raise ValueError(f"{heldout_file}: none of its {len(titles)} titles is in {config.data.train_file}")
    return examples[:limit]


def margin_auc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """P(margin of an unanswerable pair > margin of an answerable one): the Mann-Whitney U statistic
    over both sets' sizes (ties count half); None where either set is empty."""
    from scipy.stats import mannwhitneyu

    if not len(positive) or not len(negative):
        return None
    both = np.concatenate([positive, negative])
    finite_top = np.max(both[np.isfinite(both)], initial=0.0) + 1.0
    clean = lambda values: np.where(np.isfinite(values), values, finite_top)  # noqa: E731 (+inf: no span at all)
    statistic = mannwhitneyu(clean(negative), clean(positive)).statistic
    return float(statistic / (len(positive) * len(negative)))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def v11_scores(examples: Sequence[SquadExample], spans: Sequence[str]) -> dict:
    if not examples:  # e.g. no article with a second paragraph to take a distracting sentence from
        return {"exact_match": None, "f1": None, "questions": 0}
    scores = compute_score(references(examples), {e.id: s for e, s in zip(examples, spans)})
    return {k: round(v, 2) for k, v in scores.items()} | {"questions": len(examples)}


def robustness(model_dir: str | Path, backend: str = "auto", limit: int | None = None) -> dict:
    model_dir = Path(model_dir)
    engine = QAEngine.from_model_dir(model_dir, backend=backend)
    examples = heldout_examples(model_dir, limit)
    own = score_pairs(engine, [e.question for e in examples], [e.context for e in examples], "own")

    distracted = with_distractors(examples, 1.0, SEED, article=examples)
    position = {e.id: i for i, e in enumerate(examples)}
    originals = [examples[position[e.id.rsplit("#", 1)[0]]] for e in distracted.examples]
    distractor = score_pairs(engine, [e.question for e in distracted.examples],
                             [e.context for e in distracted.examples], "distractor")
    own_spans_of_originals = [own.spans[position[e.id]] for e in originals]

    removed_pairs, swapped_twins = on_topic_unanswerable(examples)
    removed = score_pairs(engine, [e.question for e, _ in removed_pairs], [c for _, c in removed_pairs],
                          "answer removed")
    swapped = score_pairs(engine, [e.question for e in swapped_twins.examples],
                          [e.context for e in swapped_twins.examples], "entity swapped")
    wrong = score_pairs(engine, [e.question for e in examples], wrong_context_pairs(examples), "wrong")

    # SQuAD 2.0 scoring over own (answerable) plus answer-removed (unanswerable) pairs.
    v2_refs = references(examples) | {e.id + "#removed": [] for e, _ in removed_pairs}
    v2_predictions = {e.id: s for e, s in zip(examples, own.spans)} | {
        e.id + "#removed": s for (e, _), s in zip(removed_pairs, removed.spans)}
    v2_margins = {e.id: m for e, m in zip(examples, own.margins.tolist())} | {
        e.id + "#removed": m for (e, _), m in zip(removed_pairs, removed.margins.tolist())}
    finite = {k: (m if np.isfinite(m) else 1e9) for k, m in v2_margins.items()}
    best = compute_score_v2(v2_refs, v2_predictions, finite)

    def abstention(threshold: float) -> dict:
        return {"threshold": round(threshold, 4), "own_pct": rate(own.abstains(threshold)),
                "answer_removed_pct": rate(removed.abstains(threshold)),
                "entity_swapped_pct": rate(swapped.abstains(threshold)), "wrong_pct": rate(wrong.abstains(threshold))}

    report = {
        "model_dir": str(model_dir), "backend": engine.backend.name, "limit": limit, "seed": SEED,
        "articles": len({e.title for e in examples}),
        "own": v11_scores(examples, own.spans),
        "distractor": v11_scores(originals, distractor.spans) | {
            "skipped": distracted.skipped,
            "own_f1_same_questions": v11_scores(originals, own_spans_of_originals)["f1"]},
        "answer_removed": {"questions": len(removed_pairs), "skipped": len(examples) - len(removed_pairs),
                           "margin_auc": _rounded(margin_auc(own.margins, removed.margins)),
                           "best_f1_own_plus_removed": round(best["best_f1"], 2),
                           "best_f1_threshold": round(best["best_f1_thresh"], 4)},
        "entity_swapped": {"questions": len(swapped_twins.examples), "skipped": swapped_twins.skipped,
                           "margin_auc": _rounded(margin_auc(own.margins, swapped.margins))},
        "served_threshold": abstention(load_params(model_dir).null_threshold),
        "served_rule_threshold": abstention(lowest_threshold_within(own.margins)),
    }
    distractor = report["distractor"]
    distractor["f1_change"] = (None if distractor["f1"] is None
                               else round(distractor["f1"] - distractor["own_f1_same_questions"], 2))
    write_json(model_dir / ROBUSTNESS_FILE, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=positive_int, default=None, help="first N held-out questions (a quick look)")
    args = parser.parse_args(argv)
    return run_stage(lambda: print(json.dumps(robustness(args.model, args.backend, args.limit), indent=2)),
                     (ConfigError, ModelLoadError, SquadFormatError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
