"""The answer request, declared once: parsing, the OpenAPI schema and the docs table all come from here.

A new request field is one entry in ITEM_FIELDS (plus, when the engine needs it, one argument of
`answer_many`); the parser, /openapi.json and the table in docs/serving.md follow from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve.settings import Settings


class ApiError(Exception):
    """A client mistake, answered as {"error": {"code", "message"}} with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


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

    def parse(self, obj: dict, where: str, settings: Settings) -> str:
        label = f"{where}{self.name}"
        if obj.get(self.name) is None:
            raise ApiError(422, "missing_field", f"field '{label}' is required")
        value = obj[self.name]
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


ITEM_FIELDS = (
    TextField("question", "Must hold a non-whitespace character.",
              lambda s: s.max_question_chars, "QA_MAX_QUESTION_CHARS"),
    TextField("context", "The text the answer is taken from; long contexts are read in overlapping "
              "windows of 384 tokens.", lambda s: s.max_context_chars, "QA_MAX_CONTEXT_CHARS"),
    IntegerField("top_k", "When given, the response adds `answers`: up to top_k best distinct answers.", 1, 10),
    IntegerField("max_answer_len", "Longest answer in model tokens (default: the model's setting, usually 30).",
                 1, 100),
    BooleanField("handle_impossible_answer", "When true, the answer may be empty (\"\", start 0, end 0, score = "
                 "p(no answer)) if the context does not hold one; the model's qa.json sets the threshold."),
)
FIELD_NAMES = tuple(f.name for f in ITEM_FIELDS)


@dataclass(frozen=True)
class AnswerRequest:
    question: str
    context: str
    top_k: int | None  # None: the client did not ask for "answers"
    max_answer_len: int | None
    handle_impossible_answer: bool = False


def parse_item(obj: Any, settings: Settings, where: str = "") -> AnswerRequest:
    """One request item from its JSON; an ApiError that names the field otherwise."""
    if not isinstance(obj, dict):
        label = where.rstrip(".") or "body"
        raise ApiError(422, "invalid_body", f"'{label}' must be a JSON object, got {json_type(obj)}")
    unknown = sorted(set(obj) - set(FIELD_NAMES))
    if unknown:
        names = ", ".join(f"'{where}{n}'" for n in unknown)
        raise ApiError(422, "unknown_field", f"unknown field(s) {names}; accepted fields: {', '.join(FIELD_NAMES)}")
    return AnswerRequest(**{f.name: f.parse(obj, where, settings) for f in ITEM_FIELDS})


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
