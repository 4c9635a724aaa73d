"""The OpenAPI 3.1 document of the service, served at /openapi.json.

Written by hand (the API is small) and checked against the Flask routes by tests/serve/test_app.py;
the request item's schema comes from serve/schema.py, the declaration the parser uses. Limits come
from the running settings, so the document states the limits this server enforces.
"""

from __future__ import annotations

from typing import Any

from serve.schema import item_json_schema, pipeline_json_schemas
from serve.security import KEY_HEADER
from serve.settings import Settings

API_VERSION = "1.0.0"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {}}}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    s = settings or Settings()
    document = _document(s)
    if s.feedback:
        with_feedback(document, s)
    return with_access_rules(document, s)


def with_feedback(document: dict[str, Any], s: Settings) -> None:
    """The feedback routes (serve/feedback_routes.py), served only with QA_FEEDBACK=on."""
    common = {"404": _error("Unknown route, or no such item."), "405": _error("Method not allowed."),
              "500": _error("Unexpected server error.")}
    reader = {"401": _error("No feedback key, or not one of QA_FEEDBACK_KEYS."),
              "403": _error("The server has no QA_FEEDBACK_KEYS: feedback cannot be read over HTTP.")}
    span = {"type": "object", "additionalProperties": False, "required": ["start", "end"],
            "properties": {"start": {"type": "integer", "minimum": 0}, "end": {"type": "integer", "minimum": 0}}}
    schemas = document["components"]["schemas"]
    schemas["FeedbackRequest"] = {
        "type": "object", "additionalProperties": False,
        "required": ["question", "context", "answer", "verdict"],
        "properties": {
            "question": {"type": "string", "minLength": 1, "maxLength": s.max_question_chars},
            "context": {"type": "string", "minLength": 1, "maxLength": s.max_context_chars},
            "answer": {**span, "description": "The answer that was given: context[start:end]."},
            "verdict": {"type": "string", "enum": ["correct", "wrong", "unanswerable"]},
            "correction": {**span, "description": "Only with verdict wrong: the span that answers the question."},
        },
    }
    schemas["FeedbackItem"] = {"type": "object", "required": ["id", "question", "context", "verdict"],
                               "properties": {"id": {"type": "integer"}, "created_at": {"type": "string"},
                                              "question": {"type": "string"}, "context": {"type": "string"},
                                              "verdict": {"type": "string"}}}
    document["paths"]["/v1/feedback"] = {
        "post": {"summary": "Record a verdict on an answer (stored with its question and context)",
                 "operationId": "addFeedback",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/FeedbackRequest"}}}},
                 "responses": {"201": {"description": "Stored.", "content": {"application/json": {"schema": {
                     "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}},
                     "400": _error("The body is not valid JSON."), "413": _error("Too large."),
                     "415": _error("Content-Type is not application/json."),
                     "422": _error("A field is missing, of the wrong type, or a span lies outside the context; "
                                   "the message names the field."), **common}},
        "get": {"summary": "Stored feedback, oldest first (a feedback key)", "operationId": "listFeedback",
                "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": {"description": "A page of items.", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackItem"}},
                        "next_after": {"type": "integer"}}}}}},
                    "400": _error("after or limit out of range."), **reader, **common}},
    }
    page = {"description": "The form page, with a thank-you or the error.", "content": {"text/html": {}}}
    document["paths"]["/feedback"] = {"post": {
        "summary": "The form page's feedback buttons (Right, Wrong, Not in the text); works without JavaScript",
        "operationId": "submitFeedbackForm",
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["question", "context", "answer_start", "answer_end", "verdict"],
            "properties": {"question": {"type": "string"}, "context": {"type": "string"},
                           "answer_start": {"type": "string"}, "answer_end": {"type": "string"},
                           "verdict": {"type": "string", "enum": ["correct", "wrong", "unanswerable"]},
                           "correction_start": {"type": "string"}, "correction_end": {"type": "string"},
                           "correction_text": {"type": "string", "description": "The right words, found in the "
                                               "context by the server when no offsets are given."}}}}}},
        "responses": {"200": page, "413": page, "415": page, "422": page, **common}}}
    document["paths"]["/v1/feedback/{item_id}"] = {
        "delete": {"summary": "Delete one feedback item (a feedback key)", "operationId": "deleteFeedback",
                   "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                   "responses": {"204": {"description": "Deleted."}, **reader, **common}},
    }


def with_access_rules(document: dict[str, Any], s: Settings) -> dict[str, Any]:
    """The key requirement and the rate limit, on the operations they apply to (serve/security.py)."""
    if not (s.api_keys or s.rate_limit):
        return document
    if s.api_keys:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
        }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            protected = (path.startswith("/v1/") or (path == "/" and method == "post")
                         or (path == "/metrics" and s.metrics_require_key))
            if not protected:
                continue
            responses = operation["responses"]
            # The form answers with its page, anything else with a JSON error.
            error = _page if path == "/" else _error
            if s.api_keys:
                operation["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
                responses["401"] = error("No API key, or not a valid one (WWW-Authenticate header).")
                if "400" not in responses:
                    responses["400"] = error("An API key was sent in the URL; keys go in a header.")
            if s.rate_limit and path != "/metrics":
                responses["429"] = error(f"Over the rate limit ({s.rate_limit} per key or client address); "
                                         "retry after the Retry-After header's seconds.")
    return document


def _document(s: Settings) -> dict[str, Any]:
    common_errors = {
        "404": _error("Unknown route."),
        "405": _error("Method not allowed on this route; the Allow header lists the allowed ones."),
        "500": _error("Unexpected server error; the body holds no trace, only the request id."),
    }
    answer_errors = {
        "400": _error("The body is not valid JSON."),
        "413": _error(
            f"Too large: body over {s.max_body_bytes} bytes, context over {s.max_context_chars} characters, "
            f"question over {s.max_question_chars} characters, or (batch) over {s.max_batch_items} items or "
            f"{s.max_batch_context_chars} context characters together. The message states the limit."
        ),
        "415": _error("Content-Type is not application/json."),
        "422": _error(
            "A field is missing, empty, whitespace only, of the wrong type, out of range or unknown, or the "
            "context has no readable text; the message names the field."
        ),
        "503": _error("The model is still loading (Retry-After header)."),
        **common_errors,
    }
    item_schema = item_json_schema(s)
    span = {
        "type": "object",
        "required": ["answer", "score", "start", "end"],
        "properties": {
            "answer": {"type": "string", "description": "Always equal to context[start:end] (for passages: "
                       "to that passage's text[start:end])."},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "start": {"type": "integer", "minimum": 0, "description": "Character (code point) offset."},
            "end": {"type": "integer", "minimum": 0, "description": "Exclusive character offset."},
            "passage": {
                "oneOf": [
                    {"type": "null"},
                    {"type": "object", "required": ["index"], "additionalProperties": False,
                     "properties": {"index": {"type": "integer", "minimum": 0},
                                    "id": {"type": ["string", "integer"]}}},
                ],
                "description": "Only when context was a list of passages: the passage the answer is in, with "
                               "its id when given; null for an empty (abstained) answer.",
            },
        },
    }
    result = {
        "allOf": [
            {"$ref": "#/components/schemas/Span"},
            {
                "type": "object",
                "properties": {
                    "answers": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Span"},
                        "description": "Present only when top_k was given; best first.",
                    }
                },
            },
        ]
    }
    served_by = {
        "model": {"type": "string"},
        "backend": {"type": "string"},
        "elapsed_ms": {"type": "number", "description": "Time spent in the service."},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Extractive question answering",
            "version": API_VERSION,
            "description": "Answers a question with a span of the supplied context (SQuAD v1.1 style). "
            'Every error body is {"error": {"code", "message"}}.',
        },
        "paths": {
            "/v1/answer": {
                "post": {
                    "summary": "Answer one question against a context",
                    "operationId": "answer",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/AnswerRequest"}}
                        },
                    },
                    "responses": {"200": _json("AnswerResponse", "The best answer."), **answer_errors},
                }
            },
            "/v1/answer/batch": {
                "post": {
                    "summary": f"Answer up to {s.max_batch_items} questions in one call",
                    "operationId": "answerBatch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}
                        },
                    },
                    "responses": {
                        "200": _json("BatchResponse", "One result per item, in the order of the items."),
                        **answer_errors,
                    },
                }
            },
            "/v1/question-answering": {
                "post": {
                    "summary": "The Hugging Face inference task shape, answered as the question-answering pipeline "
                    "answered (its parameter names and defaults)",
                    "operationId": "questionAnswering",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/PipelineRequest"}}
                        },
                    },
                    "responses": {
                        "200": _json("PipelineResponse", "One answer for one input (top_k 1), else a list (of lists "
                                     "for several inputs with top_k > 1; an input with a single "
                                     "candidate answer gives a dict, as in the pipeline)."),
                        **answer_errors,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "HTML form: question and context",
                    "operationId": "form",
                    "responses": {
                        "200": {"description": "The form.", "content": {"text/html": {}}},
                        **common_errors,
                    },
                },
                "post": {
                    "summary": "Submit the form (works without JavaScript)",
                    "operationId": "submitForm",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["question", "context"],
                                    "properties": {
                                        "question": {"type": "string"},
                                        "context": {"type": "string"},
                                        "handle_impossible_answer": {
                                            "type": "string",
                                            "description": "\"true\" (or 1, on, yes) when the box is ticked; "
                                            "anything else leaves it unticked.",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The form; the answer is a <mark> in the escaped context.",
                            "content": {"text/html": {}},
                        },
                        "413": {
                            "description": "Too long; the page states the limit.",
                            "content": {"text/html": {}},
                        },
                        "415": {"description": "Not a web form.", "content": {"text/html": {}}},
                        "422": {
                            "description": "Invalid field; the page names it.",
                            "content": {"text/html": {}},
                        },
                        "503": {"description": "Model still loading.", "content": {"text/html": {}}},
                        **common_errors,
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "operationId": "healthz",
                    "responses": {"200": _json("Status", "Alive."), **common_errors},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the model is loaded and answered a warm-up question",
                    "operationId": "readyz",
                    "responses": {
                        "200": _json("Ready", "Ready to answer."),
                        "503": _error("Still loading, or the model failed to load (the message says which)."),
                        **common_errors,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "operationId": "metrics",
                    "responses": {
                        "200": {"description": "Metrics.", "content": {"text/plain": {}}},
                        **common_errors,
                    },
                }
            },
            "/docs": {
                "get": {
                    "summary": "Interactive API docs (Swagger UI from bundled files; try the API from the page)",
                    "operationId": "apiDocs",
                    "responses": {"200": {"description": "The page.", "content": {"text/html": {}}}, **common_errors},
                }
            },
            "/docs/swagger-ui.css": {
                "get": {
                    "summary": "Swagger UI's stylesheet",
                    "operationId": "swaggerCss",
                    "responses": {"200": {"description": "CSS.", "content": {"text/css": {}}}, **common_errors},
                }
            },
            "/docs/swagger-ui-bundle.js": {
                "get": {
                    "summary": "Swagger UI's script",
                    "operationId": "swaggerJs",
                    "responses": {
                        "200": {"description": "JavaScript.", "content": {"text/javascript": {}}},
                        **common_errors,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}},
                        **common_errors,
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "AnswerRequest": item_schema,
                "BatchRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["items"],
                    "properties": {
                        "items": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": s.max_batch_items,
                            "items": {"$ref": "#/components/schemas/AnswerRequest"},
                        }
                    },
                },
                "Span": span,
                "AnswerResponse": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Result"},
                        {"type": "object", "properties": served_by},
                    ]
                },
                "Result": result,
                "BatchResponse": {
                    "type": "object",
                    "required": ["results"],
                    "properties": {
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                        **served_by,
                    },
                },
                **pipeline_json_schemas(s),
                "Status": {"type": "object", "properties": {"status": {"type": "string", "const": "ok"}}},
                "Ready": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "const": "ready"},
                        "model": {"type": "string"},
                        "version": {"type": "string"},
                        "backend": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "examples": ["missing_field"]},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
    }
