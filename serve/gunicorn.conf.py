"""gunicorn settings for the question-answering service.

    gunicorn -c serve/gunicorn.conf.py serve.wsgi:app        (or: make serve)

Environment (all optional):
    HOST, PORT                  bind address (default 127.0.0.1:8000; containers set HOST=0.0.0.0)
    WEB_CONCURRENCY             worker processes, each loads the model once (default 1)
    GUNICORN_THREADS            threads per worker (default 8; the micro-batcher runs the model calls, so
                                threads queue for the model while probes and /metrics answer)
    GUNICORN_TIMEOUT            seconds a worker may stay silent before it is killed and replaced (default 60)
    GUNICORN_GRACEFUL_TIMEOUT   seconds to finish in-flight requests after SIGTERM (default 30)
    GUNICORN_KEEPALIVE          seconds to hold an idle keep-alive connection (default 5)
    GUNICORN_MAX_REQUESTS       replace a worker after this many requests (default 0: never)
    GUNICORN_LOGLEVEL           error-log level (default info)
    QA_THREADS                  model (ONNX Runtime or torch) intra-op threads per worker (default: CPU
                                cores / workers)
    QA_MODEL_LANES              single-thread sessions that run model calls side by side under load
                                (default auto: one per QA_THREADS, at most 4; 0 turns them off;
                                serve/batching.py)
    PROMETHEUS_MULTIPROC_DIR    where workers share metrics (default: a fresh temporary directory)
    plus the QA_* variables of serve/settings.py.

Reading this file checks the settings and the model directory, so a bad value or a missing or
broken model stops start-up with one line and exit status 1 before anything binds; each worker
then loads the model (one line and exit status 4 if that still fails).
"""

import json
import os
import shutil
import sys
import tempfile
import time

from gunicorn.glogging import Logger

from qa.backends import usable_cores
from qa.errors import ModelLoadError, SettingsError
from qa.model_dir import check_model_dir
from serve.settings import Settings, env_int


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


try:
    _settings = Settings.from_env()
    _host = os.environ.get("HOST") or "127.0.0.1"
    _port = env_int(os.environ, "PORT", 8000, minimum=0, maximum=65535)
    workers = env_int(os.environ, "WEB_CONCURRENCY", 1, minimum=1, maximum=64)
    # One worker: a lone request gets every core, and under load the micro-batcher's lanes run a
    # single-thread model call per core, which is what a worker per core would give (bench/README.md).
    threads = env_int(os.environ, "GUNICORN_THREADS", 8, minimum=1, maximum=256)
    timeout = env_int(os.environ, "GUNICORN_TIMEOUT", 60, minimum=1)
    graceful_timeout = env_int(os.environ, "GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=0)
    keepalive = env_int(os.environ, "GUNICORN_KEEPALIVE", 5, minimum=0)
    # Optional recycling: a worker is replaced after this many requests (0: never).
    max_requests = env_int(os.environ, "GUNICORN_MAX_REQUESTS", 0, minimum=0)
except SettingsError as _exc:
    _fail(str(_exc))

# Refuse to start on a missing or broken model before gunicorn binds or forks anything.
try:
    check_model_dir(_settings.model_dir)
except ModelLoadError as _exc:
    _fail(str(_exc))

bind = [f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"]
worker_class = "gthread" if threads > 1 else "sync"
# Each worker loads its own model: torch's thread pools are not fork-safe, so no preload.
preload_app = False
max_requests_jitter = max(1, max_requests // 10) if max_requests else 0
# The control socket is a per-user path: two servers on one machine would fight over it.
control_socket_disable = True
proc_name = "qa-serve"

# The server never downloads anything, and progress bars do not belong in a service log.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Do not oversubscribe the CPU: workers x torch threads <= cores.
if not os.environ.get("QA_THREADS"):
    os.environ["QA_THREADS"] = str(max(1, usable_cores() // workers))  # honours cpusets and taskset

# Workers write their metrics here so /metrics sums them (see serve/metrics.py).
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qa-metrics-")

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


def redact_keys(query: str) -> str:
    """The query string with the values of key-like parameters replaced: the service refuses a key in
    the URL, but the refused request is still logged."""
    from urllib.parse import parse_qsl, urlencode

    from serve.security import URL_KEY_NAMES

    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in URL_KEY_NAMES for name, _ in pairs):
        return query
    return urlencode([(n, "[redacted]" if n.lower() in URL_KEY_NAMES else v) for n, v in pairs])


class JsonAccessLogger(Logger):
    """One JSON object per request on the access log; json.dumps escapes whatever the client sent."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = dict((k.lower(), v) for k, v in (resp.headers or []))
        record = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "type": "access",
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": redact_keys(environ.get("QUERY_STRING") or "") or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000.0, 2),
            "request_id": headers.get("x-request-id"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "pid": os.getpid(),
        }
        try:
            self.access_log.info(json.dumps(record, ensure_ascii=False))
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.exception("access log failed")


logger_class = JsonAccessLogger


def on_starting(server):
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    # Values left by an earlier run would be summed into this one's.
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))
    if _settings.feedback:
        # Once, before the workers fork: they would race to create the tables of a new database.
        from feedback.store import FeedbackStore

        store = FeedbackStore(_settings.feedback_url)
        store.migrate()
        store.dispose()  # no pooled connection may cross the fork
        server.log.info("feedback store ready (%s)", _settings.feedback_url.split("://")[0])
    server.log.info(
        "serving %s (backend %s) with %d worker(s) x %d thread(s), QA_THREADS=%s",
        _settings.model_dir,
        _settings.backend,
        workers,
        threads,
        os.environ["QA_THREADS"],
    )


def child_exit(server, worker):
    from serve.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
