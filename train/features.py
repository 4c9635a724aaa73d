"""Training features: the serving windower's windows, labelled with the answer's token span.

Windows whose answer is not fully inside them are labelled with the [CLS] position (index 0),
as Hugging Face's run_qa does; they are counted and reported, never silently dropped. Examples
with no answer at all (synthetic unanswerable pairs) label every window [CLS], counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.decoding import CLS_INDEX
from qa.windowing import Window, Windower
from train.data import SquadExample


@dataclass
class FeatureStats:
    examples: int = 0
    windows: int = 0
    windows_without_answer: int = 0
    # Examples none of whose windows holds the whole answer (the answer cannot be learned).
    examples_without_answer: int = 0
    # Synthetic unanswerable examples (no answer in their context) and their windows, all [CLS].
    unanswerable_examples: int = 0
    unanswerable_windows: int = 0

    def summary(self) -> str:
        share = 100.0 * self.windows_without_answer / max(self.windows, 1)
        unanswerable = 100.0 * self.unanswerable_windows / max(self.windows, 1)
        return (
            f"{self.examples} examples -> {self.windows} training windows; "
            f"{self.windows_without_answer} windows ({share:.1f}%) have their answer outside the window "
            f"(labelled [CLS]); {self.examples_without_answer} examples have no window holding the whole answer; "
            f"{self.unanswerable_examples} unanswerable examples -> {self.unanswerable_windows} windows "
            f"({unanswerable:.1f}%, labelled [CLS])"
        )


def answer_token_span(window: Window, answer_start: int, answer_end: int) -> tuple[int, int] | None:
    """Token indices (inclusive) of the characters [answer_start, answer_end), or None if not inside."""
    context_positions = np.nonzero(window.context_mask)[0]
    if len(context_positions) == 0:
        return None
    first, last = context_positions[0], context_positions[-1]
    if window.offsets[first, 0] > answer_start or window.offsets[last, 1] < answer_end:
        return None
    starts = window.offsets[context_positions, 0]
    ends = window.offsets[context_positions, 1]
    # First token that ends after the answer starts; last token that starts before the answer ends.
    start_token = context_positions[np.argmax(ends > answer_start)]
    end_token = context_positions[len(starts) - 1 - np.argmax(starts[::-1] < answer_end)]
    return int(start_token), int(end_token)


def build_train_features(
    windower: Windower, examples: Sequence[SquadExample], input_names: Sequence[str]
) -> tuple[dict[str, list], FeatureStats]:
    """Columns for a `datasets.Dataset`: the model inputs plus start_positions/end_positions."""
    windows = windower.windows([e.question for e in examples], [e.context for e in examples])
    columns: dict[str, list] = {name: [] for name in (*input_names, "start_positions", "end_positions")}
    stats = FeatureStats(examples=len(examples), windows=len(windows))
    answered = np.zeros(len(examples), dtype=bool)
    unanswerable = np.array([not e.answer_texts for e in examples], dtype=bool)
    for window in windows:
        example = examples[window.example_index]
        if unanswerable[window.example_index]:
            stats.unanswerable_windows += 1
            span = (CLS_INDEX, CLS_INDEX)
        elif (span := answer_token_span(window, example.answer_starts[0],
                                        example.answer_starts[0] + len(example.answer_texts[0]))) is None:
            stats.windows_without_answer += 1
            span = (CLS_INDEX, CLS_INDEX)
        else:
            answered[window.example_index] = True
        for name in input_names:
            if name == "attention_mask":
                columns[name].append([1] * len(window))
            else:
                columns[name].append(getattr(window, name).tolist())
        columns["start_positions"].append(span[0])
        columns["end_positions"].append(span[1])
    stats.unanswerable_examples = int(unanswerable.sum())
    stats.examples_without_answer = int((~answered & ~unanswerable).sum())
    return columns, stats


class PaddingCollator:
    """Pads a list of feature dicts to the longest one (a multiple of 8 for tensor cores)."""

    def __init__(self, pad_id: int, input_names: Sequence[str], pad_to_multiple_of: int = 8) -> None:
        self.pad_id = pad_id
        self.input_names = tuple(input_names)
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        length = -(-longest // self.multiple) * self.multiple
        batch = {}
        for name in self.input_names:
            fill = self.pad_id if name == "input_ids" else 0
            rows = [f[name] + [fill] * (length - len(f[name])) for f in features]
            batch[name] = torch.tensor(rows, dtype=torch.long)
        for name in ("start_positions", "end_positions"):
            if name in features[0]:
                batch[name] = torch.tensor([f[name] for f in features], dtype=torch.long)
        return batch
