"""Calibrate the no-answer threshold of a model and measure abstention.

    python -m train.calibrate --model DIR [--parts served,v2,wrong,v1] [--rule own-cap|on-topic]
                              [--limit N] [--backend B]

Every figure comes from one pass of the served decoder per (question, context) pair: with the null
candidate always ranked first (a threshold below any margin), `margin = null logit - best span logit`, and the
served rule abstains exactly when margin > null_threshold (qa/decoding.py rank_answers). So each
threshold below is applied to the same margins the service computes.

Parts (all by default):
- served: the threshold written to DIR/qa.json, chosen on the train articles the run held out
  (DIR/heldout_articles.json), never on dev. Their questions are paired with their own paragraph and
  with a paragraph of another held-out article. Rule (--rule): own-cap (default), the lowest threshold
  at which at most 1 % of own-paragraph questions abstain, abstaining on as many wrong-context
  questions as that allows; or on-topic, for models trained on on-topic unanswerable windows: the
  best SQuAD 2.0 F1 over own-paragraph pairs plus the same questions made unanswerable on their own
  paragraph (answer sentences removed; a name or number of the question swapped for another of the
  article's), with the own-paragraph F1 it gives up capped, and never above the own-cap threshold.
- v2: SQuAD 2.0 dev split by article into seeded halves; the threshold that maximises F1 on one half
  (the official best_f1 search) is scored on the other (EM, F1, HasAns, NoAns), as is the served one.
- wrong: every v1.1 dev question paired with a paragraph of another article; abstention rate.
- v1: v1.1 dev EM/F1 with abstention off and on (served threshold).
Writes DIR/calibration.json; exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa.engine import QAEngine
from qa.errors import ModelLoadError
from qa.files import write_json
from qa.model_dir import CALIBRATION_FILE, HELDOUT_FILE, METRICS_FILE, load_params, save_params
from train.cli import positive_int, run_stage
from train.config import ConfigError, expand_env, model_config
from train.data import SquadExample, SquadFormatError, load_squad, references
from train.metrics.squad_v1 import compute_score
from train.metrics.squad_v2 import compute_score_v2

if TYPE_CHECKING:
    from train.hard_examples import Built

PARTS = ("served", "v2", "wrong", "v1")
MAX_OWN_ABSTENTION = 0.01  # the own-cap rule: at most 1 % of right-document questions abstain
MAX_OWN_F1_LOSS = 0.5  # the on-topic rule: abstention may cost at most this many points of held-out F1
RULES = {
    "own-cap": f"lowest threshold with own-paragraph abstention <= {100 * MAX_OWN_ABSTENTION:g} %",
    "on-topic": (f"best F1 over own-paragraph plus on-topic unanswerable (answer removed, entity swapped) held-out "
                 f"questions, own-paragraph F1 lost to abstention <= {MAX_OWN_F1_LOSS:g} points, "
                 "threshold <= the own-cap rule's"),
}
DEFAULT_V2_FILE = "${SQUAD_DIR}/dev-v2.0-reconstructed.json.gz"
SEED = 13
BELOW_ANY_MARGIN = -1e30  # logits are O(10); qa.json thresholds must be finite


@dataclass(frozen=True)
class Scored:
    """The best span and the null margin of each pair."""

    spans: list[str]
    margins: np.ndarray  # null - best span logit; +inf when no span is valid

    def abstains(self, threshold: float) -> np.ndarray:
        return self.margins > threshold


def score_pairs(engine: QAEngine, questions: Sequence[str], contexts: Sequence[str], desc: str = "") -> Scored:
    """Best span text and null margin per pair, through the engine's own decoder."""
    from tqdm.auto import tqdm

    # A threshold below any margin: the null answer always comes first, then the best span (answers[1]).
    always_null = QAEngine(engine.backend, engine.windower, replace(engine.params, null_threshold=BELOW_ANY_MARGIN),
                           batch_size=engine.batch_size, model_dir=engine.model_dir)
    with tqdm(total=len(questions), desc=desc or "calibrate", unit="q") as bar:
        ranked = always_null.answer_many(list(questions), list(contexts), top_k=2, handle_impossible_answer=True,
                                         progress=bar.update)
    spans, margins = [], []
    for answers in ranked:
        if len(answers) == 2:
            spans.append(answers[1].text)
            margins.append(answers[0].logit - answers[1].logit)
        else:  # no valid span (or no tokens): the served rule abstains at any threshold
            spans.append("")
            margins.append(math.inf)
    return Scored(spans, np.asarray(margins, dtype=np.float64))


def lowest_threshold_within(own_margins: np.ndarray, max_rate: float = MAX_OWN_ABSTENTION) -> float:
    """The lowest threshold t with mean(own_margins > t) <= max_rate."""
    finite = np.sort(own_margins)
    allowed = int(math.floor(max_rate * len(finite)))  # this many may lie above t
    return float(finite[len(finite) - allowed - 1]) if allowed < len(finite) else -math.inf


def lowest_threshold_losing_at_most(own_margins: np.ndarray, own_f1: np.ndarray, max_loss: float) -> float:
    """The lowest threshold t at which abstaining on the own-paragraph questions with margin > t gives
    up at most `max_loss` points (of 100) of their F1 (`own_f1`: each one's span F1 in [0, 1])."""
    order = np.argsort(own_margins)
    margins, above = own_margins[order], np.concatenate([np.cumsum(own_f1[order][::-1])[::-1], [0.0]])
    candidates = np.unique(margins[np.isfinite(margins)])
    lost = 100.0 * above[np.searchsorted(margins, candidates, side="right")] / len(own_margins)
    allowed = candidates[lost <= max_loss + 1e-9]
    return float(allowed[0]) if len(allowed) else math.inf


def best_f1_threshold(own_margins: np.ndarray, own_f1: np.ndarray, unanswerable_margins: np.ndarray,
                      lowest: float = -math.inf) -> tuple[float, float]:
    """(threshold, F1 in %) maximising SQuAD 2.0 F1 over answerable pairs (own paragraph; `own_f1` is
    each one's span F1 in [0, 1] when answered) and unanswerable ones (1 when abstained), among
    thresholds >= `lowest` (a cap on own-paragraph abstention). Abstention is margin > threshold, as
    served; ties go to the lowest such threshold."""
    candidates = np.unique(np.concatenate([own_margins, unanswerable_margins, [lowest]]))
    candidates = candidates[np.isfinite(candidates) & (candidates >= lowest)]
    own_order = np.argsort(own_margins)
    own_sorted, gains = own_margins[own_order], np.cumsum(own_f1[own_order])
    answered_gain = np.where((k := np.searchsorted(own_sorted, candidates, side="right")) > 0, gains[k - 1], 0.0)
    abstained = len(unanswerable_margins) - np.searchsorted(np.sort(unanswerable_margins), candidates, side="right")
    totals = (answered_gain + abstained) / (len(own_margins) + len(unanswerable_margins))
    best = int(np.argmax(totals))
    return float(candidates[best]), round(100.0 * float(totals[best]), 2)


def wrong_context_pairs(examples: Sequence[SquadExample], seed: int = SEED) -> list[str]:
    """For each example, a paragraph of another article (seeded)."""
    by_title: dict[str, list[str]] = {}
    for e in examples:
        paragraphs = by_title.setdefault(e.title, [])
        if not paragraphs or paragraphs[-1] != e.context:
            paragraphs.append(e.context)
    titles = sorted(by_title)
    if len(titles) < 2:
        raise ValueError("a wrong-context set needs questions from at least two articles")
    rng = random.Random(seed)
    contexts = []
    for e in examples:
        other = e.title
        while other == e.title:
            other = rng.choice(titles)
        contexts.append(rng.choice(by_title[other]))
    return contexts


def rate(mask: np.ndarray) -> float | None:
    """Percent of True, or None for no questions (JSON null; NaN is not JSON)."""
    return round(100.0 * float(mask.mean()), 2) if len(mask) else None


def on_topic_threshold(own: Scored, own_f1: np.ndarray, unanswerable: Mapping[str, Scored]) -> tuple[float, dict]:
    """The on-topic rule: the threshold with the best SQuAD 2.0 F1 over the held-out questions on their
    own paragraph plus the on-topic unanswerable ones (`unanswerable`, by kind: the same questions made
    unanswerable on their own paragraph), among thresholds that give up at most MAX_OWN_F1_LOSS points
    of own-paragraph F1, and never above the own-cap rule's threshold (so wrong-context abstention
    stays at least where that rule puts it)."""
    negatives = np.concatenate([scored.margins for scored in unanswerable.values()])
    ceiling = lowest_threshold_within(own.margins)
    floor = min(lowest_threshold_losing_at_most(own.margins, own_f1, MAX_OWN_F1_LOSS), ceiling)
    best, _ = best_f1_threshold(own.margins, own_f1, negatives, lowest=floor)
    threshold = min(best, ceiling)
    answered = ~own.abstains(threshold)
    figures: dict = {
        "own_plus_unanswerable_f1": round(100.0 * (own_f1[answered].sum() + (negatives > threshold).sum())
                                          / (len(own_f1) + len(negatives)), 2),
        "own_f1_lost": round(100.0 * float(own_f1[~answered].sum()) / len(own_f1), 2)}
    for kind, scored in unanswerable.items():
        figures[f"{kind}_questions"] = len(scored.margins)
        figures[f"{kind}_abstention_pct"] = rate(scored.abstains(threshold))
    return threshold, figures


def on_topic_unanswerable(examples: Sequence[SquadExample]) -> tuple[list[tuple[SquadExample, str]], Built]:
    """The questions made unanswerable on their own paragraph: (question, its paragraph less the
    answer's sentences) pairs, and the entity-swapped twins (seeded; names from the same examples)."""
    from train.hard_examples import entity_swapped_twins, remove_answer_sentences

    removed = [(e, context) for e in examples if (context := remove_answer_sentences(e)) is not None]
    return removed, entity_swapped_twins(examples, 1.0, SEED, article=examples)


def calibrate_served(engine: QAEngine, model_dir: Path, train_file: str, limit: int | None,
                     rule: str = "own-cap") -> dict:
    heldout = json.loads((model_dir / HELDOUT_FILE).read_text(encoding="utf-8"))
    titles = set(heldout["titles"])
    examples = [e for e in load_squad(train_file) if e.title in titles][:limit]
    if not examples:
        raise ValueError(f"{model_dir / HELDOUT_FILE}: none of its {len(titles)} titles is in {train_file}")
    own = score_pairs(engine, [e.question for e in examples], [e.context for e in examples], "held-out, own")
    wrong = score_pairs(engine, [e.question for e in examples], wrong_context_pairs(examples), "held-out, wrong")
    threshold = lowest_threshold_within(own.margins)
    if not math.isfinite(threshold):
        raise ValueError(f"no finite threshold: more than {100 * MAX_OWN_ABSTENTION:g} % of the held-out questions "
                         "have no valid span in their own paragraph")
    extra: dict = {}
    if rule == "on-topic":
        from train.metrics.squad_v1 import f1_score

        removed_pairs, swapped = on_topic_unanswerable(examples)
        unanswerable = {
            "answer_removed": score_pairs(engine, [e.question for e, _ in removed_pairs],
                                          [c for _, c in removed_pairs], "held-out, answer removed"),
            "entity_swapped": score_pairs(engine, [e.question for e in swapped.examples],
                                          [e.context for e in swapped.examples], "held-out, entity swapped")}
        own_f1 = np.array([max(f1_score(span, gold) for gold in e.answer_texts) if span else 0.0
                           for e, span in zip(examples, own.spans)])
        threshold, extra = on_topic_threshold(own, own_f1, unanswerable)
    return {
        "null_threshold": threshold,
        "rule": RULES[rule],
        **extra,
        "questions": len(examples),
        "articles": len({e.title for e in examples}),
        "own_abstention_pct": rate(own.abstains(threshold)),
        "wrong_abstention_pct": rate(wrong.abstains(threshold)),
    }


def article_halves(examples: Sequence[SquadExample], seed: int = SEED) -> tuple[list[SquadExample], list[SquadExample]]:
    titles = sorted({e.title for e in examples})
    random.Random(seed).shuffle(titles)
    first = set(titles[: len(titles) // 2])
    return [e for e in examples if e.title in first], [e for e in examples if e.title not in first]


def v2_figures(refs: dict, scored: Scored, ids: list[str], threshold: float) -> dict:
    predictions = dict(zip(ids, scored.spans))
    margins = dict(zip(ids, scored.margins.tolist()))
    full = compute_score_v2(refs, predictions, margins, na_prob_thresh=threshold)
    return {k: round(full[k], 2) for k in ("exact", "f1", "HasAns_f1", "NoAns_f1", "HasAns_exact", "NoAns_exact")
            if k in full} | {"questions": full["total"], "threshold": round(threshold, 4)}


def squad_v2_halves(engine: QAEngine, v2_file: str, served: float, limit: int | None) -> dict:
    examples = load_squad(v2_file, require_answers=False)[:limit]
    tune, test = article_halves(examples)
    result = {}
    for name, half in (("tune", tune), ("test", test)):
        result[name] = (half, score_pairs(engine, [e.question for e in half], [e.context for e in half], f"v2 {name}"))
    (tune_half, tune_scored), (test_half, test_scored) = result["tune"], result["test"]
    tune_refs, test_refs = references(tune_half), references(test_half)
    tune_ids, test_ids = [e.id for e in tune_half], [e.id for e in test_half]
    best = compute_score_v2(tune_refs, dict(zip(tune_ids, tune_scored.spans)),
                            dict(zip(tune_ids, tune_scored.margins.tolist())))["best_f1_thresh"]
    return {"file": v2_file, "split": f"by article, seed {SEED}", "tune_questions": len(tune_half),
            "own_threshold": v2_figures(test_refs, test_scored, test_ids, best),
            "served_threshold": v2_figures(test_refs, test_scored, test_ids, served)}


def wrong_context_v1(engine: QAEngine, dev_file: str, served: float, limit: int | None) -> dict:
    examples = load_squad(dev_file)[:limit]
    scored = score_pairs(engine, [e.question for e in examples], wrong_context_pairs(examples), "dev, wrong")
    return {"file": dev_file, "questions": len(examples), "abstention_pct": rate(scored.abstains(served)),
            "threshold": served}


def v1_on_off(engine: QAEngine, dev_file: str, served: float, limit: int | None) -> dict:
    examples = load_squad(dev_file)[:limit]
    scored = score_pairs(engine, [e.question for e in examples], [e.context for e in examples], "dev, own")
    refs, ids = references(examples), [e.id for e in examples]
    off = compute_score(refs, dict(zip(ids, scored.spans)))
    on_spans = ["" if a else s for s, a in zip(scored.spans, scored.abstains(served))]
    on = compute_score(refs, dict(zip(ids, on_spans)))
    return {"file": dev_file, "questions": len(examples), "threshold": served,
            "off": {k: round(v, 2) for k, v in off.items()}, "on": {k: round(v, 2) for k, v in on.items()},
            "abstention_pct": rate(scored.abstains(served))}


def calibrate(model_dir: str | Path, parts: Sequence[str] = PARTS, backend: str = "auto", limit: int | None = None,
              v2_file: str | None = None, dev_file: str | None = None, rule: str = "own-cap") -> dict:
    """Runs the parts, writes DIR/calibration.json (and the served threshold into DIR/qa.json)."""
    model_dir = Path(model_dir)
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    config = model_config(model_dir)
    engine = QAEngine.from_model_dir(model_dir, backend=backend)
    report: dict = {"model_dir": str(model_dir), "backend": engine.backend.name, "limit": limit}
    served = load_params(model_dir).null_threshold
    if "served" in parts:
        if not config.data.train_file:
            raise ConfigError(config.source, "data.train_file", "not set: the held-out articles come from it")
        report["served"] = calibrate_served(engine, model_dir, config.data.train_file, limit, rule)
        served = report["served"]["null_threshold"]
        engine.params = replace(engine.params, null_threshold=served)
    report["null_threshold"] = served
    dev = dev_file or config.data.validation_file
    if not dev and {"wrong", "v1"} & set(parts):
        raise ConfigError(config.source, "data.validation_file", "not set; pass --dev-data")
    if "v2" in parts:
        report["squad_v2"] = squad_v2_halves(engine, v2_file or expand_env(DEFAULT_V2_FILE), served, limit)
    if "wrong" in parts:
        report["wrong_context"] = wrong_context_v1(engine, dev, served, limit)
    if "v1" in parts:
        report["v1_dev"] = v1_on_off(engine, dev, served, limit)
    previous = {}
    if (model_dir / CALIBRATION_FILE).is_file():  # parts run separately add up
        previous = json.loads((model_dir / CALIBRATION_FILE).read_text(encoding="utf-8"))
    # Written once every part has run, so a failed part leaves qa.json and the figures as they were.
    if "served" in parts:
        save_params(model_dir, replace(load_params(model_dir), null_threshold=served))
    write_json(model_dir / CALIBRATION_FILE, previous | report)
    if (model_dir / METRICS_FILE).is_file():  # the card shows the figures
        from train.card import render

        render(model_dir)
    return previous | report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=positive_int, default=None, help="first N questions of each set (a quick look)")
    parser.add_argument("--v2-data", help=f"SQuAD 2.0 dev file (default {DEFAULT_V2_FILE})")
    parser.add_argument("--dev-data", help="SQuAD v1.1 dev file (default: the config's validation file)")
    parser.add_argument("--rule", default="own-cap", choices=sorted(RULES), help="how the served threshold is chosen")
    args = parser.parse_args(argv)

    def stage() -> None:
        report = calibrate(args.model, [p.strip() for p in args.parts.split(",") if p.strip()], args.backend,
                           args.limit, args.v2_data, args.dev_data, args.rule)
        print(json.dumps(report, indent=2))

    return run_stage(stage, (ConfigError, ModelLoadError, SquadFormatError, ValueError, OSError, KeyError))


if __name__ == "__main__":
    sys.exit(main())
