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
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

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


@pytest.fixture(scope="module")
def byte_level_tokenizer_file(tmp_path_factory):
    """A RoBERTa-style tokenizer (byte-level BPE, <s> q </s></s> c </s>, offsets trimmed of spaces)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), trim_offsets=True)
    path = tmp_path_factory.mktemp("byte-level") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module", params=["bert", "distilbert", "byte-level"])
def model(request, tiny_bert_dir, tiny_distilbert_dir, byte_level_tokenizer_file):
    if request.param == "byte-level":
        return byte_level_tokenizer_file
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
    cached_tokens = windower.encode_contexts([context])
    cached = windower.windows([question], [context], encoded_contexts=cached_tokens)
    again = windower.windows([question], [context], encoded_contexts=cached_tokens)
    assert len(fresh) == len(cached) == len(again) == len(expected)
    for window, other, third, encoding in zip(fresh, cached, again, expected):
        assert_same(window, encoding)
        assert_same(other, encoding)
        assert_same(third, encoding)  # the cached tokens were not changed by the first use
