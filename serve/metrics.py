"""Prometheus metrics of the HTTP service.

With several gunicorn workers each worker is its own process with its own counters. When
PROMETHEUS_MULTIPROC_DIR is set (serve/gunicorn.conf.py sets it to a fresh directory unless the
operator gives one), prometheus_client writes every worker's values to files there and /metrics,
whichever worker answers it, reports the sum over all live workers: counters and histograms are
summed, the in-flight gauge is summed over live workers, and model info shows one series per
(model, version, backend). Without the variable (Flask dev server, tests) the numbers are the
answering process's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from qa.decoding import Answer
from qa.monitoring import ABSTENTION_ALLOWED, ABSTENTIONS, LOW_CONFIDENCE, SIGNALS, observations

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; question answering on CPU spans ~5 ms (tiny models) to seconds (100k-character contexts).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServiceMetrics:
    def __init__(self) -> None:
        # A registry per app, so several apps in one process (tests) do not clash.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "qa_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qa_http_request_duration_seconds",
            "Time from request start to response, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "qa_http_requests_in_flight",
            "Requests being processed right now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "qa_model_info",
            "The served model: always 1, the labels carry the information.",
            ["model", "version", "backend"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.model_ready = Gauge(
            "qa_model_ready",
            "1 once the model is loaded and answered the warm-up question (min over live workers).",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.answers = Counter(
            "qa_questions_answered",
            "Questions answered (a batch request counts each item).",
            registry=self.registry,
        )

        self.document_cache = Counter(
            "qa_document_cache_lookups",
            "Lookups of long contexts in the worker's document cache, by result (hit or miss).",
            ["result"],
            registry=self.registry,
        )

        self.feedback = Counter(
            "qa_feedback_verdicts",
            "Feedback items stored (QA_FEEDBACK=on), by verdict: correct, wrong or unanswerable.",
            ["verdict"],
            registry=self.registry,
        )
        # The model's behaviour (qa/monitoring.py), by model version and backend.
        model_labels = ["version", "backend"]
        self.signals = {signal.name: Histogram(signal.name, signal.description, model_labels,
                                               buckets=signal.buckets, registry=self.registry)
                        for signal in SIGNALS}
        self.abstentions = Counter(ABSTENTIONS, "Questions whose top answer was the empty answer (abstained).",
                                   model_labels, registry=self.registry)
        self.abstention_allowed = Counter(ABSTENTION_ALLOWED, "Questions asked with handle_impossible_answer, "
                                          "which may abstain.", model_labels, registry=self.registry)
        self.low_confidence = Counter(LOW_CONFIDENCE, "Non-empty top answers scoring below the model's "
                                      "low_confidence_score (qa.json).", model_labels, registry=self.registry)

    def model_behaviour(self, version: str, backend: str, low_confidence_score: float) -> ModelBehaviour:
        labels = (version, backend)
        return ModelBehaviour({name: h.labels(*labels) for name, h in self.signals.items()},
                              self.abstentions.labels(*labels), self.abstention_allowed.labels(*labels),
                              self.low_confidence.labels(*labels), low_confidence_score)

    def exposition(self) -> tuple[bytes, str]:
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelBehaviour:
    """The model-behaviour metrics of one served model, labelled once."""

    def __init__(self, histograms, abstentions, abstention_allowed, low_confidence, low_confidence_score) -> None:
        self.histograms = histograms
        self.abstentions = abstentions
        self.abstention_allowed = abstention_allowed
        self.low_confidence = low_confidence
        self.low_confidence_score = low_confidence_score

    def observe(self, top_answers: Sequence[Answer], abstention_allowed: bool) -> None:
        """One question per answer: its top answer."""
        for answer in top_answers:
            for name, value in observations(answer).items():
                self.histograms[name].observe(value)
            if not answer.text:
                self.abstentions.inc()
            elif answer.score < self.low_confidence_score:
                self.low_confidence.inc()
        if abstention_allowed:
            self.abstention_allowed.inc(len(top_answers))


def mark_worker_dead(pid: int) -> None:
    """Called by the gunicorn master when a worker exits, so live* gauges forget it."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
