"""The model's behaviour as numbers: what the service exports and what a drift check compares.

One definition per signal (metric name, buckets, how it is read off an answer) serves the live
metrics (serve/metrics.py), the reference profile written over dev when a model is packaged
(train/profile.py) and the drift check (serve/drift.py), so the three always bin alike.

Distributions are compared with the population stability index (PSI), the usual score of
credit-risk model monitoring: sum over buckets of (live - reference) * ln(live / reference), with
shares floored so an empty bucket does not make it infinite. Conventional reading: below 0.1 the
populations match, 0.1 to 0.25 is a shift worth a look, above 0.25 a real change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.decoding import Answer

PSI_WATCH = 0.1
PSI_DRIFT = 0.25
SHARE_FLOOR = 1e-4  # a bucket's share is at least this in the PSI, so an empty bucket counts, but finitely
MIN_LIVE_QUESTIONS = 100  # fewer live observations than this and no verdict is given


@dataclass(frozen=True)
class Signal:
    name: str  # the Prometheus histogram's name
    description: str
    buckets: tuple[float, ...]  # upper bounds (Prometheus "le"); +Inf is implied

    def counts(self, values: Iterable[float]) -> list[int]:
        """Observations per bucket, not cumulative: (-inf, b0], (b0, b1], ..., (b_last, +inf)."""
        values = np.asarray(list(values), dtype=np.float64)
        return np.bincount(np.searchsorted(np.asarray(self.buckets), values, side="left"),
                           minlength=len(self.buckets) + 1).tolist()


ANSWER_SCORE = Signal("qa_answer_score", "Score of the top answer (its probability among the candidates); "
                      "abstentions not included.", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99))
QUESTION_TOKENS = Signal("qa_question_tokens", "Question length in model tokens (after truncation).",
                         (4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64))
CONTEXT_TOKENS = Signal("qa_context_tokens", "Context length in model tokens (all passages).",
                        (32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096, 16384, 65536))
WINDOWS_READ = Signal("qa_windows_read", "Windows the model read per question (after pre-ranking).",
                      (1, 2, 3, 4, 6, 8, 16, 32, 64, 256))
ANSWER_WORDS = Signal("qa_answer_words", "Length of the top answer in words; abstentions not included.",
                      (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30))
SIGNALS = (ANSWER_SCORE, QUESTION_TOKENS, CONTEXT_TOKENS, WINDOWS_READ, ANSWER_WORDS)

# Rates: (counter of events, counter of the questions that could have had one).
ABSTENTIONS = "qa_abstentions"  # the top answer is the empty answer
ABSTENTION_ALLOWED = "qa_abstention_allowed"  # questions asked with handle_impossible_answer
LOW_CONFIDENCE = "qa_low_confidence_answers"  # a non-empty top answer scoring below low_confidence_score
RATES = {"abstention": (ABSTENTIONS, ABSTENTION_ALLOWED), "low_confidence": (LOW_CONFIDENCE, ANSWER_SCORE.name)}


def observations(answer: Answer) -> dict[str, float]:
    """Each signal's value for a question's top answer (its Reading gives the token counts)."""
    values: dict[str, float] = {}
    if answer.text:
        values[ANSWER_SCORE.name] = answer.score
        values[ANSWER_WORDS.name] = len(answer.text.split())
    reading = answer.reading
    if reading is not None:
        values[QUESTION_TOKENS.name] = reading.question_tokens
        values[CONTEXT_TOKENS.name] = reading.context_tokens
        values[WINDOWS_READ.name] = reading.windows
    return values


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """Population stability index of two count (or share) vectors over the same buckets."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    if ref.shape != cur.shape or ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError(f"psi needs two non-empty count vectors of one shape, got {ref.shape} and {cur.shape}")
    ref = np.maximum(ref / ref.sum(), SHARE_FLOOR)
    cur = np.maximum(cur / cur.sum(), SHARE_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def verdict(value: float) -> str:
    return "drift" if value > PSI_DRIFT else "watch" if value > PSI_WATCH else "stable"


@dataclass
class Profile:
    """Per-bucket counts of each signal and the counts behind each rate, over one set of questions."""

    histograms: dict[str, list[int]] = field(default_factory=dict)
    rates: dict[str, list[int]] = field(default_factory=dict)  # name -> [events, out of]
    source: dict = field(default_factory=dict)  # what it was measured on

    @classmethod
    def of_answers(cls, top_answers: Sequence[Answer], abstention_allowed: bool, low_confidence_score: float,
                   source: Mapping | None = None) -> Profile:
        values: dict[str, list[float]] = {s.name: [] for s in SIGNALS}
        for answer in top_answers:
            for name, value in observations(answer).items():
                values[name].append(value)
        answered = [a for a in top_answers if a.text]
        rates = {"low_confidence": [sum(a.score < low_confidence_score for a in answered), len(answered)]}
        if abstention_allowed:
            rates["abstention"] = [len(top_answers) - len(answered), len(top_answers)]
        return cls({s.name: s.counts(values[s.name]) for s in SIGNALS}, rates, dict(source or {}))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Profile:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            profile = cls(raw["histograms"], raw["rates"], raw.get("source", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a reference profile ({exc})") from None
        for signal in SIGNALS:
            counts = profile.histograms.get(signal.name)
            if not isinstance(counts, list) or len(counts) != len(signal.buckets) + 1:
                raise ValueError(f"{path}: histograms.{signal.name} must hold {len(signal.buckets) + 1} counts "
                                 "(the buckets changed since it was written: write it again)")
        return profile


def compare(reference: Profile, live: Profile) -> dict[str, dict]:
    """Per signal: PSI and verdict, or why there is none."""
    report: dict[str, dict] = {}
    for signal in SIGNALS:
        ref, cur = reference.histograms.get(signal.name), live.histograms.get(signal.name)
        report[signal.name] = _judge(ref, cur, sum(cur or []))
    for name, (events_ref) in reference.rates.items():
        cur_rate = live.rates.get(name)
        ref_pair = [events_ref[0], events_ref[1] - events_ref[0]]
        cur_pair = [cur_rate[0], cur_rate[1] - cur_rate[0]] if cur_rate else None
        entry = _judge(ref_pair, cur_pair, cur_rate[1] if cur_rate else 0)
        entry["reference_rate"] = _share(events_ref)
        entry["live_rate"] = _share(cur_rate) if cur_rate else None
        report[name] = entry
    return report


def _share(pair: Sequence[int] | None) -> float | None:
    return round(pair[0] / pair[1], 4) if pair and pair[1] else None


def _judge(reference: Sequence[int] | None, live: Sequence[int] | None, observed: int) -> dict:
    if not reference or sum(reference) == 0:
        return {"verdict": "no reference", "observed": observed}
    if not live or observed < MIN_LIVE_QUESTIONS:
        return {"verdict": "too few observations", "observed": observed, "needed": MIN_LIVE_QUESTIONS}
    value = psi(reference, live)
    return {"psi": round(value, 4) if math.isfinite(value) else value, "verdict": verdict(value), "observed": observed}
