"""The windows are the tokenizer's own: question + context pair, truncated with stride, token by token.

Windowing joins separately encoded questions and contexts (so that a document cache can keep a
context's tokens); the oracle here is the tokenizer encoding the pair itself with truncation
"only_second" and overflowing windows, as Hugging Face's run_qa does.
"""

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from qa.windowing import Windower

WORDS = ["The", "bridge", "opened", "in", "1894", ".", "Ünïcödé", "漢字", "🚀", "co-op", "don't", "  ", "\t", "\n\n",
         "QA_THREADS", "x" * 40, "3.5", ",", "(", ")", "über", "naïve"]


@cache
def pair_tokenizer(tokenizer_file, max_seq_length: int, doc_stride: int) -> Tokenizer:
    pair = Tokenizer.from_file(str(tokenizer_file))
    pair.no_padding()
    pair.enable_truncation(max_length=max_seq_length, stride=doc_stride, strategy="only_second",
                           direction="right")
    return pair


@cache
def windower_of(tokenizer_file, max_seq_length: int, doc_stride: int) -> Windower:
    max_query_length = min(16, max_seq_length - doc_stride - 4)
    return Windower.from_file(tokenizer_file).resized(max_seq_length, doc_stride, max_query_length)


def reference_windows(tokenizer_file, question: str, context: str, max_seq_length: int, doc_stride: int):
    encoding = pair_tokenizer(tokenizer_file, max_seq_length, doc_stride).encode(question, context)
    return [encoding, *encoding.overflowing]


def assert_same(window, encoding):
    is_context = np.asarray([s == 1 for s in encoding.sequence_ids])
    assert window.input_ids.tolist() == encoding.ids
    assert window.token_type_ids.tolist() == encoding.type_ids
    assert window.context_mask.tolist() == is_context.tolist()
    assert window.offsets[is_context].tolist() == [list(o) for o, c in zip(encoding.offsets, is_context) if c]


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def model(request, tiny_bert_dir, tiny_distilbert_dir):
    directory = tiny_bert_dir if request.param == "bert" else tiny_distilbert_dir
    return directory / "tokenizer.json"


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.sampled_from(WORDS), max_size=400),
    question_words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    sizes=st.sampled_from([(384, 128), (64, 16), (48, 8)]),
)
def test_windows_equal_the_tokenizers_pair_truncation(model, words, question_words, sizes):
    context, question = " ".join(words), " ".join(question_words).strip() or "Why?"
    max_seq_length, doc_stride = sizes
    windower = windower_of(model, max_seq_length, doc_stride)
    clipped = windower._encode_question(question)  # the oracle gets the same clipped question
    expected = reference_windows(model, question.lstrip()[: clipped.offsets[-1][1]] if clipped.ids else "",
                                 context, max_seq_length, doc_stride)
    fresh = windower.windows([question], [context])
    cached_encoding = windower.encode_contexts([context])
    cached = windower.windows([question], [context], encoded_contexts=cached_encoding)
    again = windower.windows([question], [context], encoded_contexts=cached_encoding)
    assert len(fresh) == len(cached) == len(again) == len(expected)
    for window, other, third, encoding in zip(fresh, cached, again, expected):
        assert_same(window, encoding)
        assert_same(other, encoding)
        assert_same(third, encoding)  # the cached encoding was not changed by the first use
