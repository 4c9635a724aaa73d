"""The HTTP service: JSON API, HTML form, probes, metrics and the OpenAPI document.

`create_app(engine_or_factory, settings)` takes anything with the engine interface below (a
`QAEngine`, or a wrapper such as a request micro-batcher) or a zero-argument callable that
builds one. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    render_template,
    request,
    send_from_directory,
)
from werkzeug.exceptions import HTTPException

from qa.backends import GRAPH_FILES
from qa.decoding import Answer
from qa.engine import Answerer
from qa.errors import ModelLoadError
from qa.model_dir import graph_sha256, weight_files
from qa.params import DEFAULT_LOW_CONFIDENCE_SCORE
from qa.pipeline import InvalidArgument, NoReadableText, QuestionAnswerer
from serve.batching import BatcherClosed
from serve.feedback_routes import install as install_feedback
from serve.metrics import ModelBehaviour, ServiceMetrics
from serve.openapi import openapi_document
from serve.pages import check_form_post, form_page
from serve.prediction_log import PredictionLog
from serve.schema import AnswerRequest, ApiError, json_type, parse_item, parse_json_body, parse_pipeline_request
from serve.security import ApiKeys
from serve.security import install as install_security
from serve.settings import Settings

log = logging.getLogger("serve.app")

WARMUP_QUESTION = "What does the service answer?"
WARMUP_CONTEXT = "The service answers questions about a context that the user supplies."
REQUEST_ID_HEADER = "X-Request-ID"
# Scripts only from this server (the form's feedback.js); no inline script can run.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")
# Relaxed for /docs only: Swagger UI sets inline styles, shows data: images and fetches /openapi.json
# and the requests "Try it out" sends (same origin). Scripts still come from this server alone.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


EngineSource = Answerer | Callable[[], Answerer]


class EngineSlot:
    """Holds the engine once it is loaded and has answered the warm-up question."""

    def __init__(self, source: EngineSource) -> None:
        self._source = source
        self._engine: Answerer | None = None
        self.error: str | None = None
        self.loaded = threading.Event()
        self.thread: threading.Thread | None = None

    def load(self, on_ready: Callable[[Answerer], Answerer]) -> Answerer:
        """Builds the engine, asks it the warm-up question and serves what `on_ready` makes of it."""
        source = self._source
        engine = source if hasattr(source, "answer_many") else source()  # type: ignore[operator]
        answers = engine.answer_many([WARMUP_QUESTION], [WARMUP_CONTEXT], top_k=1, max_answer_length=None)
        if not answers or not answers[0]:
            raise ModelLoadError(getattr(engine, "model_dir", "?"), "the warm-up question got no answer")
        self._engine = on_ready(engine)
        self.loaded.set()
        return self._engine

    def load_in_thread(self, on_ready: Callable[[Answerer], Answerer]) -> threading.Thread:
        def run() -> None:
            try:
                self.load(on_ready)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, logged once here
                self.error = str(exc)
                log.error("model load failed: %s", exc)

        self.thread = threading.Thread(target=run, name="model-loader", daemon=True)
        self.thread.start()
        return self.thread

    @property
    def engine(self) -> Answerer:
        if self._engine is None:
            detail = f"model failed to load: {self.error}" if self.error else "model is still loading"
            raise ApiError(503, "not_ready", detail, headers={"Retry-After": "5"})
        return self._engine


def backend_name(engine: Any) -> str:
    name = getattr(engine, "backend_name", None) or getattr(getattr(engine, "backend", None), "name", None)
    return str(name or "unknown")


def model_version(model_dir: Path | None, backend: str | None = None) -> str:
    """A short hash of the served weights: two deployments can tell whether they serve the same model."""
    if model_dir is None:
        return "unknown"
    for name in weight_files(GRAPH_FILES.get(backend or "")):
        path = Path(model_dir) / name
        if path.is_file():
            return "sha256:" + graph_sha256(path)[:12]
    return "unknown"


# ---------------------------------------------------------------- request bodies


def parse_batch(body: Any, settings: Settings) -> list[AnswerRequest]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", f"'body' must be a JSON object, got {json_type(body)}")
    unknown = sorted(set(body) - {"items"})
    if unknown:
        raise ApiError(
            422, "unknown_field", f"unknown field(s) {', '.join(repr(u) for u in unknown)}; accepted fields: items"
        )
    raw_items = body.get("items")
    if raw_items is None:
        raise ApiError(422, "missing_field", "field 'items' is required")
    if not isinstance(raw_items, list):
        raise ApiError(422, "invalid_field", f"field 'items' must be an array, got {json_type(raw_items)}")
    if not raw_items:
        raise ApiError(422, "empty_field", "field 'items' must hold at least one item")
    if len(raw_items) > settings.max_batch_items:
        raise ApiError(
            413,
            "too_many_items",
            f"field 'items' has {len(raw_items)} items; the limit is {settings.max_batch_items} items",
        )
    items = [parse_item(obj, settings, f"items[{i}].") for i, obj in enumerate(raw_items)]
    total = sum(item.context_chars for item in items)
    if total > settings.max_batch_context_chars:
        raise ApiError(
            413,
            "batch_too_long",
            f"the items' contexts have {total} characters together; the limit is "
            f"{settings.max_batch_context_chars} characters per batch",
        )
    return items


# ---------------------------------------------------------------- the service state


@dataclass
class Service:
    """What the routes share, kept in app.extensions["qa"]."""

    settings: Settings
    slot: EngineSlot
    metrics: ServiceMetrics
    info: dict[str, str]
    keys: ApiKeys | None = None

    def on_ready(self, engine: Answerer) -> Answerer:
        """Records the loaded model in the metrics; returns the engine to serve (observed by them)."""
        info = self.info
        info["backend"] = backend_name(engine)
        info["version"] = model_version(getattr(engine, "model_dir", None) or self.settings.model_dir, info["backend"])
        self.metrics.model_info.labels(info["model"], info["version"], info["backend"]).set(1)
        self.metrics.model_ready.set(1)
        documents = getattr(engine, "documents", None)
        if documents is not None:
            documents.on_hit = self.metrics.document_cache.labels("hit").inc
            documents.on_miss = self.metrics.document_cache.labels("miss").inc
        log.info("model %s (%s, backend %s) ready", info["model"], info["version"], info["backend"])
        behaviour = predictions = None
        if self.settings.model_metrics:
            params = getattr(engine, "params", None)
            low_confidence = getattr(params, "low_confidence_score", DEFAULT_LOW_CONFIDENCE_SCORE)
            behaviour = self.metrics.model_behaviour(info["version"], info["backend"], low_confidence)
        if self.settings.prediction_log is not None:
            predictions = PredictionLog(self.settings.prediction_log, self.settings.prediction_log_sample)
        return ObservedEngine(engine, behaviour, predictions, info) if behaviour or predictions else engine

    def answer(self, items: list[AnswerRequest], where: Callable[[int], str]) -> list[dict]:
        engine = self.slot.engine
        results: list[dict | None] = [None] * len(items)
        # answer_many takes one set of options per call, so group the items that share them.
        groups: dict[tuple, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(tuple(sorted(item.options.items())), []).append(index)
        for options, indices in groups.items():
            answers = engine.answer_many(
                [items[i].question for i in indices], [items[i].context for i in indices], **dict(options)
            )
            for i, ranked in zip(indices, answers, strict=True):
                if not ranked:
                    raise ApiError(
                        422,
                        "no_tokens",
                        f"field '{where(i)}context' has no readable text for the model "
                        "(only control, format or unknown characters)",
                    )
                result = answer_json(ranked[0], items[i])
                if items[i].ranked:
                    result["answers"] = [answer_json(a, items[i]) for a in ranked]
                results[i] = result
        self.metrics.answers.inc(len(items))
        return results  # type: ignore[return-value]

    def served_by(self) -> dict[str, Any]:
        return {"model": self.info["model"], "backend": self.info["backend"], "elapsed_ms": elapsed_ms()}


class ObservedEngine:
    """The served engine, with each question's top answer counted in the model-behaviour metrics and,
    for a sampled request, written to the prediction log. Every route answers through it."""

    def __init__(self, engine: Answerer, behaviour: ModelBehaviour | None, predictions: PredictionLog | None = None,
                 served: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.behaviour = behaviour
        self.predictions = predictions
        self.served = served or {}

    def answer_many(self, questions, contexts, **options) -> list[list[Answer]]:
        answers = self.engine.answer_many(questions, contexts, **options)
        if self.behaviour is not None:
            self.behaviour.observe([ranked[0] for ranked in answers if ranked],
                                   options.get("handle_impossible_answer") is True)
        if self.predictions is not None and has_request_context():
            if "log_prediction" not in g:  # a request is logged whole or not at all
                g.log_prediction = self.predictions.wanted()
            if g.log_prediction:
                route = request.url_rule.rule if request.url_rule is not None else request.path
                self.predictions.write(g.get("request_id", ""), route, self.served, questions, contexts, answers,
                                       options)
        return answers

    def __getattr__(self, name: str):
        if name == "engine":  # not set yet: avoid recursing during construction
            raise AttributeError(name)
        return getattr(self.engine, name)


def answer_json(answer: Answer, item: AnswerRequest) -> dict[str, Any]:
    """An answer as the API gives it; for passages, with the passage it is in (null: abstained)."""
    result = answer.as_dict()
    if item.passage_ids is not None:
        result["passage"] = answer.passage_json(item.passage_ids)
    return result


def service() -> Service:
    return current_app.extensions["qa"]


def elapsed_ms() -> float:
    return round((time.perf_counter() - g.started) * 1000.0, 2)


def create_app(engine_or_factory: EngineSource, settings: Settings | None = None) -> Flask:
    """The Flask app. Loads the engine (or, with settings.load_in_background, starts loading it)."""
    settings = settings or Settings()
    app = Flask(__name__)
    # Flask reads FLASK_DEBUG from the environment; a stray one must not put a server in debug mode.
    # `flask run` (make dev) sets the flag again after this, from the same variable.
    app.debug = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = Service(settings, EngineSlot(engine_or_factory), ServiceMetrics(),
                    {"model": settings.model_name, "backend": "unknown", "version": "unknown"})
    app.extensions["qa"] = state
    if settings.proxy_hops:  # the client's address (for rate limits) from the proxies' X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    app.register_blueprint(routes)
    state.keys = install_security(app, settings)
    install_feedback(app, settings)
    state.metrics.model_ready.set(0)
    if settings.load_in_background:
        state.slot.load_in_thread(state.on_ready)
    else:
        state.slot.load(state.on_ready)
    return app


routes = Blueprint("qa", __name__)

# ---------------------------------------------------------------- cross-cutting


@routes.before_app_request
def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
    service().metrics.in_flight.inc()
    g.in_flight = True


@routes.after_app_request
def finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = DOCS_CSP if request.path == "/docs" else PAGE_CSP
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics = service().metrics
    metrics.requests.labels(route, request.method, str(response.status_code)).inc()
    if "started" in g:
        metrics.latency.labels(route).observe(time.perf_counter() - g.started)
    return response


@routes.teardown_app_request
def end_in_flight(_exc: BaseException | None) -> None:
    if g.pop("in_flight", False):
        service().metrics.in_flight.dec()


@routes.app_errorhandler(ApiError)
def api_error(exc: ApiError) -> tuple[Response, int, dict[str, str]]:
    return error_response(exc.status, exc.code, exc.message), exc.status, exc.headers


@routes.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
    status = exc.code or 500
    code = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
    message = exc.description or exc.name
    if status == 413:
        code = "payload_too_large"
        message = f"request body is larger than the limit of {service().settings.max_body_bytes} bytes"
    elif status == 404:
        message = f"no route {request.path}; see /openapi.json for the API"
    elif status == 405:
        allowed = ", ".join(sorted(exc.valid_methods or [])) if hasattr(exc, "valid_methods") else ""
        message = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return error_response(status, code, message), status, headers


@routes.app_errorhandler(BatcherClosed)
def shutting_down(exc: BatcherClosed) -> tuple[Response, int, dict[str, str]]:
    # The worker is draining for shutdown: the client should retry elsewhere, not see a bug.
    return error_response(503, "not_ready", "the server is shutting down; retry"), 503, {"Retry-After": "1"}


@routes.app_errorhandler(Exception)
def unexpected_error(exc: Exception) -> tuple[Response, int]:
    log.exception("unhandled error on %s %s (request %s)", request.method, request.path, g.get("request_id"))
    message = f"internal error; quote request id {g.get('request_id', '-')} when reporting it"
    return error_response(500, "internal_error", message), 500


# ---------------------------------------------------------------- answering


@routes.post("/v1/answer")
def answer() -> Response:
    state = service()
    item = parse_item(parse_json_body(), state.settings)
    (result,) = state.answer([item], lambda _: "")
    return jsonify({**result, **state.served_by()})


@routes.post("/v1/answer/batch")
def answer_batch() -> Response:
    state = service()
    items = parse_batch(parse_json_body(), state.settings)
    results = state.answer(items, lambda i: f"items[{i}].")
    return jsonify({"results": results, **state.served_by()})


@routes.post("/v1/question-answering")
def question_answering() -> Response:
    """The Hugging Face inference task shape, answered as the pipeline answered (its defaults too)."""
    state = service()
    asked = parse_pipeline_request(parse_json_body(), state.settings)
    try:
        result = QuestionAnswerer(state.slot.engine)(question=asked.questions, context=asked.contexts,
                                                     **asked.parameters)
    except NoReadableText as exc:
        field = "inputs" if asked.single else f"inputs[{exc.index}]"
        raise ApiError(422, "no_tokens", f"field '{field}.context' has no readable text for the model "
                       "(only control, format or unknown characters)") from None
    except InvalidArgument as exc:  # a parameter combination the model cannot use (the message names it)
        raise ApiError(422, "invalid_parameters", f"parameters.{exc}") from None
    state.metrics.answers.inc(len(asked.questions))
    return jsonify(result)


# ---------------------------------------------------------------- the HTML form


@routes.route("/", methods=["GET", "POST"])
def form() -> tuple[str, int]:
    state = service()
    page = form_page(state)
    if request.method == "GET":
        return render_template("index.html", **page), 200
    status = 200
    try:
        check_form_post(state)
        fields: dict[str, Any] = {k: request.form[k] for k in ("question", "context") if k in request.form}
        page["question"] = fields.get("question", "")
        page["context"] = fields.get("context", "")
        # A ticked checkbox sends value="true"; other clients may send false/0/off.
        ticked = request.form.get("handle_impossible_answer", "").strip().lower() in ("true", "1", "on", "yes")
        page["abstain"] = fields["handle_impossible_answer"] = ticked
        item = parse_item(fields, state.settings)
        (result,) = state.answer([item], lambda _: "")
        context = item.context
        page["result"] = {
            "start": result["start"],
            "end": result["end"],
            "before": context[: result["start"]],
            "answer": result["answer"],
            "after": context[result["end"] :],
            "score": result["score"],
            "elapsed_ms": elapsed_ms(),
        }
    except ApiError as exc:
        status = exc.status
        page["error"] = exc.message
    return render_template("index.html", **page), status


# ---------------------------------------------------------------- probes, metrics, docs


@routes.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@routes.get("/readyz")
def readyz() -> Response:
    state = service()
    state.slot.engine  # noqa: B018 - raises the 503 until the model is loaded and warmed up
    return jsonify({"status": "ready", **state.info})


@routes.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = service().metrics.exposition()
    return Response(body, content_type=content_type)


@routes.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(service().settings))


# ---------------------------------------------------------------- interactive API docs (Swagger UI)
# Served from the swagger-ui-py package's bundled files: nothing comes from a CDN.


def swagger_static_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("swagger_ui")  # its files only; its Python code is not needed
    if spec is None or not spec.submodule_search_locations:
        raise ApiError(503, "not_available", "the interactive API docs need the swagger-ui-py package")
    return Path(spec.submodule_search_locations[0]) / "static"


@routes.get("/docs")
def api_docs() -> str:
    return render_template("docs.html")


@routes.get("/docs/swagger-ui.css")
def swagger_css() -> Response:
    return send_from_directory(swagger_static_dir(), "swagger-ui.css", max_age=86400)


@routes.get("/docs/swagger-ui-bundle.js")
def swagger_js() -> Response:
    return send_from_directory(swagger_static_dir(), "swagger-ui-bundle.js", max_age=86400)


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response
