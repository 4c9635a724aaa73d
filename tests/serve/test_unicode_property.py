"""Property: for any Unicode context, every answer is context[start:end], in the engine and over HTTP."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# Letters of many scripts, combining marks, emoji and symbols, digits, punctuation, spaces, tabs,
# control and format characters (zero-width joiners, BOM): everything a pasted text can hold.
# Surrogates are excluded: they cannot be encoded as UTF-8, and the API rejects them with a 422.
unicode_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),
    min_size=1,
    max_size=300,
)
mostly_words = st.lists(
    st.one_of(
        st.sampled_from(
            ["naïve", "café", "東京", "Zürich", "🚀", "👩‍🔬", "e\u0301", "\t", "  ", "\n", "ﬁ", "İ", "ß"]
        ),
        st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Zs")), min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=60,
).map(" ".join)
contexts = st.one_of(unicode_text, mostly_words)
questions = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda q: q.strip()
)

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(question=questions, context=contexts, top_k=st.integers(1, 10))
@example(question="Where?", context="Ça coûte 5 €\t\tà Zürich — 東京タワー 🚀👩‍🔬 naïve  café.", top_k=10)
@example(question="What?", context="e\u0301te\u0301 ﬁnal İstanbul straße", top_k=5)
@example(question="Which?", context="\u200b\ufeff word \u200d", top_k=3)
def test_engine_answers_are_spans_of_the_context(tiny_engine, question, context, top_k):
    answers = tiny_engine.answer(question, context, top_k=top_k)
    for answer in answers:
        assert 0 <= answer.start < answer.end <= len(context)
        assert context[answer.start : answer.end] == answer.text
    assert len({a.text for a in answers}) == len(answers) <= top_k


@PROPERTY_SETTINGS
@given(question=questions, context=contexts)
@example(
    question="Where?",
    context="\t\t東京  タワー\n\n🚀 e\u0301 ",
)
def test_http_answers_are_spans_of_the_context(client, tiny_engine, question, context):
    response = client.post(
        "/v1/answer",
        data=json.dumps({"question": question, "context": context, "top_k": 3}),
        content_type="application/json",
    )
    body = response.get_json()
    if not context.strip():
        assert response.status_code == 422 and body["error"]["code"] == "empty_field"
        return
    if not tiny_engine.answer(question, context):
        assert response.status_code == 422 and body["error"]["code"] == "no_tokens"
        return
    assert response.status_code == 200, body
    for answer in [body, *body["answers"]]:
        assert context[answer["start"] : answer["end"]] == answer["answer"]
