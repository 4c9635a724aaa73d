"""The request item is declared once (serve/schema.py): the docs table and the OpenAPI schema follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serve.openapi import openapi_document
from serve.schema import FIELD_NAMES, AnswerRequest, ApiError, docs_table, parse_item
from serve.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def test_the_docs_table_is_the_generated_one():
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- request-fields:begin -->\n(.*?)\n<!-- request-fields:end -->", text, re.S)
    assert block, "docs/serving.md lost its request-fields block"
    regenerate = "python -c 'from serve.schema import docs_table; print(docs_table())'"
    assert block.group(1) == docs_table(Settings()), f"the table is stale; regenerate it with {regenerate}"


def test_parser_openapi_and_request_type_name_the_same_fields():
    item = openapi_document(Settings())["components"]["schemas"]["AnswerRequest"]
    assert tuple(item["properties"]) == FIELD_NAMES
    assert item["required"] == ["question", "context"]
    parsed = parse_item({"question": "q", "context": "c", "top_k": 2, "handle_impossible_answer": True}, Settings())
    assert parsed == AnswerRequest("q", "c", {"top_k": 2, "handle_impossible_answer": True}, ranked=True)
    # Every option a field sets is one the engine takes.
    from dataclasses import fields

    from qa.params import AnswerOptions
    from serve.schema import ITEM_FIELDS

    assert {f.option for f in ITEM_FIELDS if f.option} <= {f.name for f in fields(AnswerOptions)}


def test_limits_follow_the_settings():
    settings = Settings(max_question_chars=5)
    assert "1–5 characters" in docs_table(settings)
    schema = openapi_document(settings)["components"]["schemas"]["AnswerRequest"]
    assert schema["properties"]["question"]["maxLength"] == 5
    with pytest.raises(ApiError, match="has 6 characters; the limit is 5") as caught:
        parse_item({"question": "sixsix", "context": "c"}, settings)
    assert (caught.value.status, caught.value.code) == (413, "question_too_long")


def test_the_pipeline_parameter_table_is_the_generated_one():
    from serve.schema import pipeline_docs_table

    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- pipeline-parameters:begin -->\n(.*?)\n<!-- pipeline-parameters:end -->", text, re.S)
    assert block and block.group(1) == pipeline_docs_table(Settings())
