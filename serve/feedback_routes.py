"""Feedback on answers over HTTP (QA_FEEDBACK=on; off by default: it stores users' text).

    POST   /v1/feedback              {"question", "context", "answer": {"start", "end"},
                                      "verdict": "correct" | "wrong" | "unanswerable",
                                      "correction": {"start", "end"}?}  -> 201 {"id"}
    POST   /feedback                 the form page's Right / Wrong / Not in the text buttons; the right
                                     words come as offsets (selected in the page, feedback.js) or as
                                     typed text the server finds in the context
    GET    /v1/feedback?after=&limit=  the stored items, oldest first (a feedback key)
    DELETE /v1/feedback/<id>           removes one item (a feedback key)

Reading and deleting need one of QA_FEEDBACK_KEYS (Authorization: Bearer or X-API-Key); without
any configured, nobody can read feedback back over HTTP (`make feedback-export` reads the database).
The access log records the path and status only, never the body, so no context reaches a log.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request

from feedback.store import VERDICTS, FeedbackError, FeedbackItem, FeedbackStore
from serve.pages import check_form_post, form_page
from serve.schema import ApiError, TextField, json_type, parse_json_body
from serve.security import ApiKeys, presented_key

feedback_routes = Blueprint("feedback", __name__)

FEEDBACK_FIELDS = ("question", "context", "answer", "verdict", "correction")
QUESTION = TextField("question", "The question that was asked.", lambda s: s.max_question_chars,
                     "QA_MAX_QUESTION_CHARS")
CONTEXT = TextField("context", "The context it was asked against (one string).", lambda s: s.max_context_chars,
                    "QA_MAX_CONTEXT_CHARS")
MAX_PAGE = 1000


def _span(body: dict, name: str, required: bool) -> tuple[int | None, int | None]:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, "missing_field", f"field '{name}' is required")
        return None, None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_field", f"field '{name}' must be an object {{start, end}}, got {json_type(value)}")
    unknown = sorted(set(value) - {"start", "end"})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(f'{name}.{u}' for u in unknown)}")
    bounds = []
    for key in ("start", "end"):
        number = value.get(key)
        if number is None:
            raise ApiError(422, "missing_field", f"field '{name}.{key}' is required")
        if isinstance(number, bool) or not isinstance(number, int):
            raise ApiError(422, "invalid_field", f"field '{name}.{key}' must be an integer, got {json_type(number)}")
        bounds.append(number)
    return bounds[0], bounds[1]


def parse_feedback(body: Any, settings, served: dict[str, str], request_id: str, source: str = "api") -> FeedbackItem:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object, got {json_type(body)}")
    unknown = sorted(set(body) - set(FEEDBACK_FIELDS))
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(repr(u) for u in unknown)}; accepted "
                       f"fields: {', '.join(FEEDBACK_FIELDS)}")
    if isinstance(body.get("context"), list):
        raise ApiError(422, "invalid_field", "field 'context' must be one string: feedback on passages is not "
                       "taken; send the passage the answer is in")
    question = QUESTION.parse(body, "", settings)
    context = CONTEXT.parse(body, "", settings)
    verdict = body.get("verdict")
    if verdict is None:
        raise ApiError(422, "missing_field", "field 'verdict' is required")
    if verdict not in VERDICTS:
        got = repr(verdict) if isinstance(verdict, str) else json_type(verdict)
        raise ApiError(422, "invalid_field", f"field 'verdict' must be one of {', '.join(VERDICTS)}, got {got}")
    start, end = _span(body, "answer", required=True)
    correction = _span(body, "correction", required=False)
    item = FeedbackItem(question, context, start, end, verdict, *correction, model=served.get("model"),
                        model_version=served.get("version"), request_id=request_id, source=source)
    try:
        return item.validate()
    except FeedbackError as exc:
        raise ApiError(422, "invalid_field", f"field '{exc.field}' {exc.problem}") from None


def _store() -> FeedbackStore:
    return current_app.extensions["qa.feedback"]


def _require_reader() -> None:
    keys: ApiKeys = current_app.extensions["qa.feedback_keys"]
    if not keys:
        raise ApiError(403, "forbidden", "reading feedback over HTTP needs QA_FEEDBACK_KEYS on the server")
    presented = presented_key(request)
    if presented is None or keys.identify(presented) is None:
        raise ApiError(401, "invalid_api_key", "reading or deleting feedback needs one of QA_FEEDBACK_KEYS",
                       headers={"WWW-Authenticate": 'Bearer realm="squad-qa-feedback"'})


def _offset(form, name: str) -> int | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ApiError(422, "invalid_field", f"field '{name}' must be a whole number, got {raw[:20]!r}")
    return int(raw)


def find_in_context(context: str, words: str) -> tuple[int, int]:
    """Where typed words occur in the context: exactly, else ignoring case and runs of whitespace."""
    words = words.strip()
    start = context.find(words)
    if start >= 0:
        return start, start + len(words)
    pattern = r"\s+".join(re.escape(part) for part in words.split())
    found = re.search(pattern, context, re.IGNORECASE) if pattern else None
    if found is None:
        raise ApiError(422, "invalid_field", "field 'correction_text': the right answer must be words of the text; "
                       f"{words[:60]!r} is not in it")
    return found.start(), found.end()


def parse_form_feedback(form, settings, served: dict[str, str], request_id: str) -> FeedbackItem:
    question = QUESTION.check(form.get("question"), "question", settings)
    context = CONTEXT.check(form.get("context"), "context", settings)
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        raise ApiError(422, "invalid_field", f"field 'verdict' must be one of {', '.join(VERDICTS)}")
    start, end = _offset(form, "answer_start"), _offset(form, "answer_end")
    if start is None or end is None:
        raise ApiError(422, "missing_field", "fields 'answer_start' and 'answer_end' are required")
    correction: tuple[int | None, int | None] = (None, None)
    if verdict == "wrong":
        selected = (_offset(form, "correction_start"), _offset(form, "correction_end"))
        typed = form.get("correction_text", "")
        if None not in selected:
            correction = selected
        elif typed.strip():
            correction = find_in_context(context, typed)
    item = FeedbackItem(question, context, start, end, verdict, *correction, model=served.get("model"),
                        model_version=served.get("version"), request_id=request_id, source="form")
    try:
        return item.validate()
    except FeedbackError as exc:
        raise ApiError(422, "invalid_field", f"field '{exc.field}' {exc.problem}") from None


@feedback_routes.post("/feedback")
def feedback_form() -> tuple[str, int]:
    state = current_app.extensions["qa"]
    page = form_page(state, question=request.form.get("question", ""), context=request.form.get("context", ""))
    status = 200
    try:
        check_form_post(state)
        item = parse_form_feedback(request.form, state.settings, state.info, g.get("request_id", ""))
        item_id = _store().add(item)
        state.metrics.feedback.labels(item.verdict).inc()
        page["thanks"] = f"Thank you: your verdict ({item.verdict}) is stored as item {item_id}."
    except ApiError as exc:
        status = exc.status
        page["error"] = exc.message
    return render_template("index.html", **page), status


@feedback_routes.post("/v1/feedback")
def add_feedback() -> tuple[Response, int]:
    state = current_app.extensions["qa"]
    item = parse_feedback(parse_json_body(), state.settings, state.info, g.get("request_id", ""))
    item_id = _store().add(item)
    state.metrics.feedback.labels(item.verdict).inc()
    return jsonify({"id": item_id}), 201


@feedback_routes.get("/v1/feedback")
def list_feedback() -> Response:
    _require_reader()
    try:
        after = int(request.args.get("after", "0"))
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "invalid_query", "after and limit must be integers") from None
    if after < 0 or not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_query", f"after must be 0 or more and limit 1 to {MAX_PAGE}")
    items = _store().items(after, limit)
    for item in items:
        item["created_at"] = item["created_at"].isoformat()
    return jsonify({"items": items, "next_after": items[-1]["id"] if items else after})


@feedback_routes.delete("/v1/feedback/<int:item_id>")
def delete_feedback(item_id: int) -> tuple[str, int]:
    _require_reader()
    if not _store().delete(item_id):
        raise ApiError(404, "not_found", f"no feedback item {item_id}")
    return "", 204


def install(app, settings) -> None:
    """The feedback routes and store, when QA_FEEDBACK=on; the schema is migrated to the newest revision."""
    if not settings.feedback:
        return
    store = FeedbackStore(settings.feedback_url)
    store.migrate()
    app.extensions["qa.feedback"] = store
    app.extensions["qa.feedback_keys"] = ApiKeys(settings.feedback_keys)
    app.register_blueprint(feedback_routes)
