"""The document cache: long contexts tokenised and indexed once, within a bound in bytes."""

import numpy as np
import pytest

from qa.documents import MIN_CACHED_CHARS, DocumentCache
from qa.engine import QAEngine
from qa.windowing import ContextTokens

FILLER = "The committee met again and the weather stayed mild while the town went about its business. "


def tokens_of(size: int) -> ContextTokens:
    return ContextTokens(np.zeros(size, np.int64), np.zeros((size, 2), np.int64), np.zeros(size, np.int64))


def document(n: int) -> str:
    return f"{n} " + "x" * MIN_CACHED_CHARS


class Encoder:
    """Tokens of 32 bytes each (ids, offsets, words); counts the contexts it was asked to encode."""

    def __init__(self, tokens: int = 100) -> None:
        self.tokens = tokens
        self.encoded = 0

    def __call__(self, contexts):
        self.encoded += len(contexts)
        return [tokens_of(self.tokens) for _ in contexts]


def test_a_second_lookup_is_a_hit_and_encodes_nothing():
    counted = []
    cache = DocumentCache(10_000, on_hit=lambda: counted.append("hit"), on_miss=lambda: counted.append("miss"))
    encode = Encoder()
    first = cache.documents([document(1)], encode)[0]
    again = cache.documents([document(1)], encode)[0]
    assert again is first and encode.encoded == 1
    assert (cache.hits, cache.misses, counted) == (1, 1, ["miss", "hit"])


def test_short_contexts_are_encoded_every_time_and_never_counted():
    cache = DocumentCache(10_000)
    encode = Encoder()
    cache.documents(["a paragraph"], encode)
    cache.documents(["a paragraph"], encode)
    assert encode.encoded == 2 and len(cache) == 0 and (cache.hits, cache.misses) == (0, 0)


def test_the_bound_holds_and_the_least_recently_used_document_goes_first():
    cache = DocumentCache(3 * 3_200 + 100)  # three documents of 3,200 bytes
    encode = Encoder(100)
    for n in (1, 2, 3):
        cache.documents([document(n)], encode)
    cache.documents([document(1)], encode)  # 1 is now the most recently used
    cache.documents([document(4)], encode)  # so 2 goes
    assert cache.bytes == 3 * 3_200 <= cache.max_bytes and len(cache) == 3
    before = encode.encoded
    cache.documents([document(1), document(3), document(4)], encode)
    assert encode.encoded == before
    cache.documents([document(2)], encode)
    assert encode.encoded == before + 1


def test_derived_indexes_count_in_the_bound():
    cache = DocumentCache(2 * 3_200 + 100)
    encode = Encoder(100)
    first = cache.documents([document(1)], encode)[0]
    cache.documents([document(2)], encode)
    cache.add_extra(first, "index", object(), 3_000)  # past the bound: the least recently used goes
    assert cache.bytes <= cache.max_bytes
    assert first.key is None  # evicted: it was the least recently used
    assert len(cache) == 1


def test_a_document_larger_than_the_whole_cache_is_answered_but_not_kept():
    cache = DocumentCache(1_000)
    found = cache.documents([document(1)], Encoder(100))[0]
    assert len(found.tokens) == 100 and len(cache) == 0 and cache.bytes == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_a_bad_bound_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(".", r"\.")):
        DocumentCache(bad)


def test_the_engine_answers_the_same_with_the_cache_and_counts_the_second_question_a_hit(tiny_bert_dir):
    cached = QAEngine.from_model_dir(tiny_bert_dir, backend="torch", document_cache_bytes=8 * 2**20)
    uncached = QAEngine.from_model_dir(tiny_bert_dir, backend="torch", document_cache_bytes=0)
    context = FILLER * 40 + "The lighthouse keeper was Ada Blackwood. " + FILLER * 40
    for question in ("Who was the lighthouse keeper?", "Who kept the lighthouse on the rocks by the town?"):
        for k in (0, 2):
            assert cached.answer(question, context, max_windows=k, top_k=3) == uncached.answer(
                question, context, max_windows=k, top_k=3)
    assert (cached.documents.misses, cached.documents.hits) == (1, 3)
    assert uncached.documents is None
    entry = cached.documents.documents([context], cached.windower.encode_contexts)[0]
    assert "words" in entry.extras and sum(1 for name in entry.extras if name != "words") == 2  # two question lengths
    assert cached.documents.bytes == entry.nbytes
