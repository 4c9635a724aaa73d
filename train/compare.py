"""Champion versus challenger on the same questions: the paired difference of per-question F1.

Two models scored on the same questions differ by less than their separate F1 intervals suggest:
most questions are easy (or hard) for both. The paired bootstrap resamples questions, keeping each
question's two F1 values together, and gives a confidence interval of the mean difference
(challenger - champion, in F1 points). scipy.stats.bootstrap does the resampling (percentile
interval: BCa's jackknife over 10,000 questions would need a 10,000 x 10,000 matrix).

- worse beyond noise: the whole interval is below 0 (the gate refuses such a challenger);
- better beyond noise: the whole interval is above 0 (what a domain adaptation must show).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from train.metrics.squad_v1 import f1_score

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 2026


def per_question_f1(references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> np.ndarray:
    """Official v1.1 F1 (0-100) of each referenced question, in the references' order; a missing
    prediction scores 0."""
    return np.asarray([100.0 * max(f1_score(predictions.get(qid, ""), gold) for gold in golds)
                       for qid, golds in references.items()], dtype=np.float64)


@dataclass(frozen=True)
class PairedDifference:
    questions: int
    challenger_f1: float
    champion_f1: float
    difference: float  # mean of challenger - champion, F1 points
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int

    @property
    def worse_beyond_noise(self) -> bool:
        return self.ci_high < 0

    @property
    def better_beyond_noise(self) -> bool:
        return self.ci_low > 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"challenger F1 {self.challenger_f1:.2f} vs champion {self.champion_f1:.2f} on the same "
                f"{self.questions} questions: difference {self.difference:+.2f} "
                f"({100 * self.confidence:g} % interval {self.ci_low:+.2f} to {self.ci_high:+.2f}, paired bootstrap, "
                f"{self.resamples} resamples)")


def paired_difference(challenger: np.ndarray, champion: np.ndarray, confidence: float = CONFIDENCE,
                      resamples: int = RESAMPLES, seed: int = SEED) -> PairedDifference:
    from scipy.stats import bootstrap

    challenger, champion = np.asarray(challenger, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if challenger.shape != champion.shape or challenger.ndim != 1 or len(challenger) < 2:
        raise ValueError(f"need two per-question score vectors of one length (>= 2), got {challenger.shape} and "
                         f"{champion.shape}")
    difference = challenger - champion
    if np.all(difference == difference[0]):  # identical answers (or a constant shift): nothing to resample
        low = high = float(difference[0])
    else:
        result = bootstrap((difference,), np.mean, confidence_level=confidence, n_resamples=resamples,
                           method="percentile", vectorized=True, batch=500, rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return PairedDifference(len(difference), round(float(challenger.mean()), 4), round(float(champion.mean()), 4),
                            round(float(difference.mean()), 4), round(low, 4), round(high, 4), confidence, resamples,
                            seed)
