"""The answer request, declared once: parsing, the OpenAPI schema and the docs table all come from here.

A new request field is one entry in ITEM_FIELDS; the parser, /openapi.json, the table in
docs/serving.md and the engine call (its `option=`, a qa.params.AnswerOptions field) follow from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import request

from qa.pipeline import ARGUMENTS as PIPELINE_ARGUMENTS
from serve.settings import Settings


class ApiError(Exception):
    """A client mistake, answered as {"error": {"code", "message"}} with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def parse_json_body() -> Any:
    """The request's JSON body; 415 unless it is declared as JSON, 413 past the size limit, 400 if malformed."""
    if not request.mimetype or request.mimetype != "application/json":
        got = request.mimetype or "none"
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, got {got}")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut silently at the limit; reading on raises the 413 if it went on.
        request.stream.read(1)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None


def json_type(value: Any) -> str:
    """How an error message names the JSON type of a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True)
class TextField:
    """A required, non-blank string of at most `limit(settings)` characters."""

    name: str
    description: str
    limit: Callable[[Settings], int]
    limit_env: str  # the variable that sets the limit, for the docs

    required = True
    option = None

    def parse(self, obj: dict, where: str, settings: Settings) -> str:
        label = f"{where}{self.name}"
        if obj.get(self.name) is None:
            raise ApiError(422, "missing_field", f"field '{label}' is required")
        return self.check(obj[self.name], label, settings)

    def check(self, value: Any, label: str, settings: Settings) -> str:
        """The value, if it is a string this field accepts; an ApiError naming `label` otherwise."""
        if not isinstance(value, str):
            raise ApiError(422, "invalid_field", f"field '{label}' must be a string, got {json_type(value)}")
        if value == "":
            raise ApiError(422, "empty_field", f"field '{label}' must not be empty")
        if value.strip() == "":
            raise ApiError(422, "empty_field", f"field '{label}' must not be whitespace only")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                422, "invalid_field", f"field '{label}' contains a lone UTF-16 surrogate (invalid Unicode)"
            ) from None
        limit = self.limit(settings)
        if len(value) > limit:
            raise ApiError(413, f"{self.name}_too_long",
                           f"field '{label}' has {len(value)} characters; the limit is {limit} characters")
        return value

    def json_schema(self, settings: Settings) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.limit(settings), "description": self.description}

    def doc_row(self, settings: Settings) -> str:
        return (f"| `{self.name}` | string, required | 1–{self.limit(settings)} characters (`{self.limit_env}`), "
                f"not whitespace only | {self.description} |")


@dataclass(frozen=True)
class IntegerField:
    """An optional integer in [low, high]; null is the same as leaving it out."""

    name: str
    description: str
    low: int
    high: int
    option: str | None = None  # the qa.params.AnswerOptions field it sets, if any

    required = False

    def parse(self, obj: dict, where: str, settings: Settings) -> int | None:
        value = obj.get(self.name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            label = f"{where}{self.name}"
            raise ApiError(422, "invalid_field", f"field '{label}' must be an integer, got {json_type(value)}")
        if not self.low <= value <= self.high:
            label = f"{where}{self.name}"
            bounds = f"between {self.low} and {self.high}"
            raise ApiError(422, "out_of_range", f"field '{label}' must be {bounds}, got {value}")
        return value

    def json_schema(self, settings: Settings) -> dict[str, Any]:
        return {"type": ["integer", "null"], "minimum": self.low, "maximum": self.high,
                "description": self.description}

    def doc_row(self, settings: Settings) -> str:
        return f"| `{self.name}` | integer, optional | {self.low}–{self.high} | {self.description} |"


@dataclass(frozen=True)
class BooleanField:
    """An optional true/false; null or absent is `default`."""

    name: str
    description: str
    default: bool = False
    option: str | None = None  # the qa.params.AnswerOptions field it sets, if any

    required = False

    def parse(self, obj: dict, where: str, settings: Settings) -> bool:
        value = obj.get(self.name)
        if value is None:
            return self.default
        if not isinstance(value, bool):
            label = f"{where}{self.name}"
            raise ApiError(422, "invalid_field", f"field '{label}' must be true or false, got {json_type(value)}")
        return value

    def json_schema(self, settings: Settings) -> dict[str, Any]:
        return {"type": ["boolean", "null"], "default": self.default, "description": self.description}

    def doc_row(self, settings: Settings) -> str:
        default = str(self.default).lower()
        return f"| `{self.name}` | boolean, optional | true, false (default {default}) | {self.description} |"


@dataclass(frozen=True)
class ContextField:
    """The context: one string, or a list of passages, each a string or {"text", "id"}. The length
    limit applies to all passages together."""

    text: TextField

    name = "context"
    required = True
    option = None

    def parse(self, obj: dict, where: str, settings: Settings) -> str | Passages:
        value = obj.get(self.name)
        if not isinstance(value, list):
            return self.text.parse(obj, where, settings)
        label = f"{where}{self.name}"
        if not value:
            raise ApiError(422, "empty_field", f"field '{label}' must hold at least one passage")
        if len(value) > settings.max_passages:
            raise ApiError(413, "too_many_passages", f"field '{label}' has {len(value)} passages; the limit is "
                           f"{settings.max_passages} passages (QA_MAX_PASSAGES)")
        texts: list[str] = []
        ids: list[str | int | None] = []
        for index, passage in enumerate(value):
            here = f"{label}[{index}]"
            if isinstance(passage, dict):
                _no_unknown(passage, ("text", "id"), f"{here}.")
                if passage.get("text") is None:
                    raise ApiError(422, "missing_field", f"field '{here}.text' is required")
                passage_id = passage.get("id")
                if passage_id is not None and (isinstance(passage_id, bool) or not isinstance(passage_id, (str, int))):
                    raise ApiError(422, "invalid_field",
                                   f"field '{here}.id' must be a string or an integer, got {json_type(passage_id)}")
                texts.append(self.text.check(passage["text"], f"{here}.text", settings))
                ids.append(passage_id)
            else:
                texts.append(self.text.check(passage, here, settings))
                ids.append(None)
        total = sum(len(text) for text in texts)
        limit = self.text.limit(settings)
        if total > limit:
            raise ApiError(413, "context_too_long", f"field '{label}' has {total} characters in its passages "
                           f"together; the limit is {limit} characters")
        return Passages(texts, ids)

    def json_schema(self, settings: Settings) -> dict[str, Any]:
        text = self.text.json_schema(settings)
        passage = {"oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "object", "additionalProperties": False, "required": ["text"],
             "properties": {"text": {"type": "string", "minLength": 1},
                            "id": {"type": ["string", "integer", "null"],
                                   "description": "Returned with the answer; null is the same as leaving it out."}}},
        ]}
        return {"description": self.text.description, "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": text["maxLength"]},
            {"type": "array", "minItems": 1, "maxItems": settings.max_passages, "items": passage},
        ]}

    def doc_row(self, settings: Settings) -> str:
        return (f"| `context` | string, or array of passages, required | 1–{self.text.limit(settings)} characters "
                f"in all (`{self.text.limit_env}`), not whitespace only; at most {settings.max_passages} passages "
                f"(`QA_MAX_PASSAGES`), each a string or `{{\"text\", \"id\"}}` | {self.text.description} |")


@dataclass(frozen=True)
class Passages:
    """A context given as passages; `ids` are the clients' own (None where not given)."""

    texts: list[str]
    ids: list[str | int | None]


CONTEXT_TEXT = TextField(
    "context", "The text the answer is taken from; long contexts are read in overlapping windows of 384 tokens, "
    "pre-ranked against the question when there are more than max_windows of them. A list of passages is "
    "read as one document whose answer names its passage.", lambda s: s.max_context_chars, "QA_MAX_CONTEXT_CHARS")
ITEM_FIELDS = (
    TextField("question", "Must hold a non-whitespace character.",
              lambda s: s.max_question_chars, "QA_MAX_QUESTION_CHARS"),
    ContextField(CONTEXT_TEXT),
    IntegerField("top_k", "When given, the response adds `answers`: up to top_k best distinct answers.", 1, 10,
                 option="top_k"),
    IntegerField("max_answer_len", "Longest answer in model tokens (default: the model's setting, usually 30).",
                 1, 100, option="max_answer_length"),
    BooleanField("handle_impossible_answer", "When true, the answer may be empty (\"\", start 0, end 0, score = "
                 "p(no answer)) if the context does not hold one; the model's qa.json sets the threshold.",
                 option="handle_impossible_answer"),
    IntegerField("max_windows", "Windows of 384 tokens the model reads: a longer context (or list of passages) "
                 "has its windows ranked against the question with BM25 and only the best are read, plus near "
                 "ties up to twice as many; 0 reads every window (default: the model's setting).", 0, 256,
                 option="max_windows"),
)
FIELD_NAMES = tuple(f.name for f in ITEM_FIELDS)


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    context: str | list[str]  # one text, or passages
    options: dict[str, Any]  # qa.params.AnswerOptions fields the client set, by ITEM_FIELDS' `option`
    ranked: bool  # the client gave top_k: the response adds "answers"
    passage_ids: list[str | int | None] | None = None  # for passages: the clients' ids

    @property
    def context_chars(self) -> int:
        return len(self.context) if isinstance(self.context, str) else sum(len(text) for text in self.context)


def parse_item(obj: Any, settings: Settings, where: str = "") -> AnswerRequest:
    """One request item from its JSON; an ApiError that names the field otherwise."""
    if not isinstance(obj, dict):
        label = where.rstrip(".") or "body"
        raise ApiError(422, "invalid_body", f"'{label}' must be a JSON object, got {json_type(obj)}")
    _no_unknown(obj, FIELD_NAMES, where)
    values = {f.name: f.parse(obj, where, settings) for f in ITEM_FIELDS}
    options = {f.option: values[f.name] for f in ITEM_FIELDS if f.option and values[f.name] is not None}
    context = values["context"]
    if isinstance(context, Passages):
        return AnswerRequest(values["question"], context.texts, options, values["top_k"] is not None, context.ids)
    return AnswerRequest(values["question"], context, options, ranked=values["top_k"] is not None)


def item_json_schema(settings: Settings) -> dict[str, Any]:
    """The OpenAPI schema of one request item."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in ITEM_FIELDS if f.required],
        "properties": {f.name: f.json_schema(settings) for f in ITEM_FIELDS},
    }


def docs_table(settings: Settings | None = None) -> str:
    """The request-field table of docs/serving.md (a test keeps the two equal)."""
    settings = settings or Settings()
    rows = ["| Field | Type | Accepted | Meaning |", "|---|---|---|---|"]
    return "\n".join(rows + [f.doc_row(settings) for f in ITEM_FIELDS])


# ---------------------------------------------------------------- the Hugging Face task shape
# POST /v1/question-answering: {"inputs": {"question", "context"} or a list of them, "parameters": {...}},
# answered in the pipeline's shape with the pipeline's defaults (qa/pipeline.py ARGUMENTS).

# question, and context as one string: there a list of inputs is a batch, as the pipeline had it.
PIPELINE_INPUT_FIELDS = (ITEM_FIELDS[0], TextField(
    "context", "The text the answer is taken from; long contexts are read in overlapping windows of 384 tokens.",
    lambda s: s.max_context_chars, "QA_MAX_CONTEXT_CHARS"))
PIPELINE_DEFAULTS = {a.name: a.default for a in PIPELINE_ARGUMENTS}
PIPELINE_PARAMETERS = (
    IntegerField("top_k", "Answers per input; above 1 the answer is a list.", 1, 10),
    IntegerField("doc_stride", "Tokens shared by consecutive windows of a long context (default "
                 "min(max_seq_len // 2, 128)).", 1, 256),
    IntegerField("max_answer_len", f"Longest answer in tokens (default {PIPELINE_DEFAULTS['max_answer_len']}, "
                 "the pipeline's).", 1, 100),
    IntegerField("max_seq_len", "Tokens per window (default 384); at most the model's positions.", 32, 512),
    IntegerField("max_question_len", "Longer questions are cut to this many tokens (default 64, fewer when a "
                 "short max_seq_len needs the room).", 1, 256),
    BooleanField("handle_impossible_answer", "May answer \"\" (start 0, end 0) when the context does not hold "
                 "the answer; the model's qa.json sets the threshold.", PIPELINE_DEFAULTS["handle_impossible_answer"]),
    BooleanField("align_to_words", "Widen answers to whole words.", PIPELINE_DEFAULTS["align_to_words"]),
)


@dataclass(frozen=True)
class PipelineRequest:
    questions: list[str]
    contexts: list[str]
    single: bool  # inputs was one object: the answer is one object (top_k 1)
    parameters: dict[str, Any]  # only those the client set


def parse_pipeline_request(body: Any, settings: Settings) -> PipelineRequest:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", f"'body' must be a JSON object, got {json_type(body)}")
    _no_unknown(body, ("inputs", "parameters"), "")
    inputs = body.get("inputs")
    if inputs is None:
        raise ApiError(422, "missing_field", "field 'inputs' is required")
    single = isinstance(inputs, dict)
    if single:
        items = [(inputs, "inputs.")]
    elif isinstance(inputs, list):
        if not inputs:
            raise ApiError(422, "empty_field", "field 'inputs' must hold at least one input")
        if len(inputs) > settings.max_batch_items:
            raise ApiError(413, "too_many_items",
                           f"field 'inputs' has {len(inputs)} inputs; the limit is {settings.max_batch_items} inputs")
        items = [(obj, f"inputs[{i}].") for i, obj in enumerate(inputs)]
    else:
        raise ApiError(422, "invalid_field", f"field 'inputs' must be an object or an array, got {json_type(inputs)}")
    questions, contexts = [], []
    for obj, where in items:
        if not isinstance(obj, dict):
            raise ApiError(422, "invalid_body", f"'{where.rstrip('.')}' must be a JSON object, got {json_type(obj)}")
        _no_unknown(obj, tuple(f.name for f in PIPELINE_INPUT_FIELDS), where)
        question, context = (f.parse(obj, where, settings) for f in PIPELINE_INPUT_FIELDS)
        questions.append(question)
        contexts.append(context)
    total = sum(len(c) for c in contexts)
    if total > settings.max_batch_context_chars:
        raise ApiError(413, "batch_too_long", f"the inputs' contexts have {total} characters together; the limit "
                       f"is {settings.max_batch_context_chars} characters per request")
    raw = body.get("parameters")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_field", f"field 'parameters' must be an object, got {json_type(raw)}")
    _no_unknown(raw, tuple(f.name for f in PIPELINE_PARAMETERS), "parameters.")
    parameters = {f.name: f.parse(raw, "parameters.", settings)
                  for f in PIPELINE_PARAMETERS if raw.get(f.name) is not None}
    _check_window_advance(parameters)
    return PipelineRequest(questions, contexts, single, parameters)


def _check_window_advance(parameters: dict[str, Any]) -> None:
    """Each window must move on by at least a quarter of its length: a tiny advance (max_seq_len 261,
    doc_stride 256, max_question_len 1) would read a long context in thousands of windows."""
    from qa.pipeline import window_sizes

    seq, stride, question = window_sizes(parameters.get("max_seq_len"), parameters.get("doc_stride"),
                                         parameters.get("max_question_len"))
    advance = seq - question - 3 - stride  # context tokens per window ([CLS], [SEP], [SEP]) minus the overlap
    if advance < seq // 4:
        raise ApiError(422, "invalid_parameters", f"parameters: with max_seq_len={seq}, doc_stride={stride} and "
                       f"max_question_len={question} a window moves on by {advance} tokens; it must move on by "
                       f"at least {seq // 4} (a quarter of max_seq_len): lower doc_stride or max_question_len")


def _no_unknown(obj: dict, accepted: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(accepted))
    if unknown:
        names = ", ".join(f"'{where}{n}'" for n in unknown)
        raise ApiError(422, "unknown_field", f"unknown field(s) {names}; accepted fields: {', '.join(accepted)}")


def pipeline_json_schemas(settings: Settings) -> dict[str, Any]:
    """The OpenAPI component schemas of the Hugging Face task shape."""
    pipeline_input = {
        "type": "object", "additionalProperties": False, "required": ["question", "context"],
        "properties": {f.name: f.json_schema(settings) for f in PIPELINE_INPUT_FIELDS},
    }
    return {
        "PipelineInput": pipeline_input,
        "PipelineRequest": {
            "type": "object", "additionalProperties": False, "required": ["inputs"],
            "properties": {
                "inputs": {"oneOf": [{"$ref": "#/components/schemas/PipelineInput"},
                                     {"type": "array", "minItems": 1, "maxItems": settings.max_batch_items,
                                      "items": {"$ref": "#/components/schemas/PipelineInput"}}]},
                "parameters": {"type": ["object", "null"], "additionalProperties": False,
                               "properties": {f.name: f.json_schema(settings) for f in PIPELINE_PARAMETERS}},
            },
        },
        "PipelineAnswer": {"$ref": "#/components/schemas/Span"},
        # The pipeline's shapes: a dict per answer, a list per input with several answers. An input that
        # yields one candidate is a dict even with top_k > 1, so a list of inputs may mix the two.
        "PipelineResponse": {"oneOf": [
            {"$ref": "#/components/schemas/Span"},
            {"type": "array", "items": {"oneOf": [
                {"$ref": "#/components/schemas/Span"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Span"}},
            ]}},
        ]},
    }


def pipeline_docs_table(settings: Settings | None = None) -> str:
    """The parameter table of the Hugging Face task shape in docs/serving.md."""
    settings = settings or Settings()
    rows = ["| Parameter | Type | Accepted | Meaning |", "|---|---|---|---|"]
    return "\n".join(rows + [f.doc_row(settings) for f in PIPELINE_PARAMETERS])
