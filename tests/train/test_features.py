"""Windowing offsets and answer labels: window edges, unicode, repeated spaces, both architectures."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from qa.windowing import Windower
from train.data import SquadExample
from train.features import CLS_INDEX, answer_token_span, build_train_features


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))


def numbered_context(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def example(context: str, answer: str, start: int | None = None, question: str = "which word?") -> SquadExample:
    start = context.index(answer) if start is None else start
    return SquadExample("id", "t", context, question, (answer,), (start,))


def test_windows_overlap_by_doc_stride_and_cover_the_context(tokenizer):
    windower = Windower(tokenizer, max_seq_length=32, doc_stride=8, max_query_length=8)
    context = numbered_context(60)
    windows = windower.windows(["which word?"], [context])
    assert len(windows) > 2
    covered = set()
    for first, second in zip(windows, windows[1:]):
        a = first.offsets[first.context_mask]
        b = second.offsets[second.context_mask]
        overlap = {tuple(o) for o in a} & {tuple(o) for o in b}
        assert len(overlap) == 8  # doc_stride tokens repeat in the next window
    for w in windows:
        assert len(w) <= 32
        covered |= {tuple(o) for o in w.offsets[w.context_mask]}
    # every character of every word is inside some token span
    spans = sorted(covered)
    assert spans[0][0] == 0 and spans[-1][1] == len(context)


def test_offsets_slice_the_original_text_with_unicode_and_repeated_spaces(tokenizer):
    context = "The café   Zoë\tserves  crème brûlée, 北京 dumplings and 😀 emoji.\u00a0Done."
    windower = Windower(tokenizer, max_seq_length=24, doc_stride=6, max_query_length=8)
    for window in windower.windows(["what is served?"], [context]):
        for start, end in window.offsets[window.context_mask]:
            piece = context[start:end]
            assert piece and piece == piece.strip(), (start, end, piece)


@pytest.mark.parametrize("position", ["first", "last", "straddles_edge", "longer_than_a_window"])
def test_labels_at_window_edges(tokenizer, position):
    windower = Windower(tokenizer, max_seq_length=32, doc_stride=8, max_query_length=8)
    context = numbered_context(60)
    windows = windower.windows(["which word?"], [context])
    first_window = windows[0]
    ctx_tokens = np.nonzero(first_window.context_mask)[0]
    if position == "first":
        start, end = first_window.offsets[ctx_tokens[0]]
    elif position == "last":
        start, end = first_window.offsets[ctx_tokens[-1]]
    elif position == "straddles_edge":  # first window's last token plus two tokens only the next window holds
        start = first_window.offsets[ctx_tokens[-1], 0]
        end = first_window.offsets[ctx_tokens[-1], 1] + len(" word99 word99") - 1
        end = context.index(" ", end) if " " in context[end:] else len(context)
    else:  # from the first window's first context token to the second window's last
        start = first_window.offsets[ctx_tokens[0], 0]
        end = windows[1].offsets[np.nonzero(windows[1].context_mask)[0][-1], 1]
    answer = context[start:end]
    columns, stats = build_train_features(windower, [example(context, answer, int(start))], ["input_ids"])
    labelled = [(s, e) for s, e in zip(columns["start_positions"], columns["end_positions"]) if s != CLS_INDEX]
    if position == "longer_than_a_window":
        # Too long for any one window: every window is labelled [CLS] and the loss is reported.
        assert labelled == []
        assert stats.examples_without_answer == 1
        assert stats.windows_without_answer == stats.windows
    else:
        assert labelled, "some window holds the whole answer"
        if position == "straddles_edge":
            assert columns["start_positions"][0] == CLS_INDEX  # cut by the first window's edge
            assert stats.windows_without_answer >= 1
        for window_index, (s, e) in enumerate(zip(columns["start_positions"], columns["end_positions"])):
            if s == CLS_INDEX:
                continue
            window = windows[window_index]
            assert context[window.offsets[s, 0]:window.offsets[e, 1]] == answer
        assert stats.examples_without_answer == 0


def test_answer_inside_a_word_piece_maps_to_the_covering_tokens(tokenizer):
    context = "Visit unbelievably beautiful places."
    windower = Windower(tokenizer)
    window = windower.windows(["q"], [context])[0]
    start = context.index("believably")
    span = answer_token_span(window, start, start + len("believably"))
    assert span is not None
    s, e = span
    assert window.offsets[s, 0] <= start and window.offsets[e, 1] >= start + len("believably")


def test_unicode_answers_are_labelled_exactly(tokenizer):
    context = "Menu:  crème brûlée   and 北京烤鸭 with 😀 sauce."
    windower = Windower(tokenizer, max_seq_length=24, doc_stride=6, max_query_length=8)
    for answer in ("crème brûlée", "北京烤鸭", "sauce"):
        ex = example(context, answer)
        columns, _ = build_train_features(windower, [ex], ["input_ids"])
        windows = windower.windows([ex.question], [context])
        found = {
            context[w.offsets[s, 0]:w.offsets[e, 1]]
            for w, s, e in zip(windows, columns["start_positions"], columns["end_positions"]) if s != CLS_INDEX
        }
        assert found == {answer}


def test_long_question_is_clipped_so_windows_hold_context(tokenizer):
    windower = Windower(tokenizer, max_seq_length=32, doc_stride=8, max_query_length=8)
    question = " ".join(["why"] * 200)
    windows = windower.windows([question], ["short context here"])
    assert windows and all(w.context_mask.any() for w in windows)
    assert all(len(w) <= 32 for w in windows)


def test_token_type_ids_only_for_models_that_take_them(tiny_bert_dir, tiny_distilbert_dir):
    from qa.backends import TorchBackend

    bert = TorchBackend(tiny_bert_dir)
    distil = TorchBackend(tiny_distilbert_dir)
    assert "token_type_ids" in bert.input_names
    assert "token_type_ids" not in distil.input_names
    windower = Windower.from_file(tiny_bert_dir / "tokenizer.json")
    ex = example("The tower is 31 metres tall.", "31 metres")
    bert_columns, _ = build_train_features(windower, [ex], bert.input_names)
    distil_columns, _ = build_train_features(windower, [ex], distil.input_names)
    assert set(bert_columns) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert "token_type_ids" not in distil_columns
    # the context segment is marked 1 for BERT
    window = windower.windows([ex.question], [ex.context])[0]
    assert set(window.token_type_ids[window.context_mask]) == {1}


def test_window_settings_are_validated(tokenizer):
    with pytest.raises(ValueError, match="leaves no room for context"):
        Windower(tokenizer, max_seq_length=64, doc_stride=48, max_query_length=32)
