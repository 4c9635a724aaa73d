"""Who may call the service: API keys, rate limits and CORS. Each is off until configured
(serve/settings.py), so `make serve` on a laptop stays open and simple.

- Keys: `Authorization: Bearer <key>` or `X-API-Key: <key>` on the answering routes (POST /v1/...,
  and the forms' POSTs, which send the key in a form field). A key in the URL is refused even when
  it is right: URLs end up in logs and browser history. Keys are compared as sha256 digests with
  hmac.compare_digest against every configured key, so the time taken says nothing about how
  much of a key was right or which key matched.
- Rate limits (Flask-Limiter): one budget per key, or per client address without one, shared by
  the answering routes. Probes, /metrics and CORS preflight are never limited.
- CORS (flask-cors): only the configured origins, on /v1/ routes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from flask import Flask, Request, g, request

from serve.schema import ApiError
from serve.settings import Settings

KEY_HEADER = "X-API-Key"
FORM_KEY_FIELD = "api_key"
# The HTML forms' POST routes: they carry the key in a form field and show a refusal on their page.
FORM_PATHS = ("/", "/feedback")
FORM_ENDPOINTS = ("qa.form", "feedback.feedback_form")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Query parameters a client might put a key in; any of them is refused.
URL_KEY_NAMES = frozenset({"api_key", "apikey", "api-key", "key", "access_token", "token"})
REALM = 'Bearer realm="squad-qa"'
CORS_HEADERS = ["Content-Type", "Authorization", KEY_HEADER, "X-Request-ID"]
CORS_EXPOSED = ["X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


class ApiKeys:
    """The configured keys, kept only as sha256 digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode("utf-8")).digest() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str) -> str | None:
        """A short id of the matching key (for rate limits and logs), or None. Every key is compared,
        in constant time, whatever matched before."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        matched = None
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                matched = known
        return matched.hex()[:12] if matched is not None else None


def needs_key(req: Request, settings: Settings) -> bool:
    """The answering routes (and /metrics when so configured); never a preflight."""
    if req.method == "OPTIONS":
        return False
    if req.path == "/metrics":
        return settings.metrics_require_key
    return req.path.startswith("/v1/") or (req.path in FORM_PATHS and req.method == "POST")


def presented_key(req: Request) -> str | None:
    authorization = req.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if req.headers.get(KEY_HEADER):
        return req.headers[KEY_HEADER].strip()
    if req.path in FORM_PATHS and req.method == "POST" and req.mimetype in FORM_TYPES:
        return req.form.get(FORM_KEY_FIELD, "").strip() or None
    return None


def caller_key_id(keys: ApiKeys) -> str | None:
    """The id of the valid key this request carries (worked out once per request)."""
    if "api_key_id" not in g:
        presented = presented_key(request)
        g.api_key_id = keys.identify(presented) if (keys and presented) else None
    return g.api_key_id


def check_key(keys: ApiKeys, settings: Settings) -> None:
    """Raises a 4xx ApiError unless the request may go on."""
    if not keys or not needs_key(request, settings):
        return
    in_url = sorted(name for name in request.args if name.lower() in URL_KEY_NAMES)
    if in_url:
        raise ApiError(400, "key_in_url", f"query parameter {in_url[0]!r} looks like an API key; send keys in the "
                       f"Authorization header (Bearer) or {KEY_HEADER}, never in the URL")
    if presented_key(request) is None:
        raise ApiError(401, "missing_api_key", f"this server needs an API key: send Authorization: Bearer <key> "
                       f"or {KEY_HEADER}: <key>", headers={"WWW-Authenticate": REALM})
    if caller_key_id(keys) is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid",
                       headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})


def install(app: Flask, settings: Settings) -> ApiKeys:
    """Keys, rate limits and CORS as configured (nothing at all when none is); returns the keys."""
    # Feedback readers may ask questions too; their keys never turn key checks on by themselves.
    keys = ApiKeys(settings.api_keys + settings.feedback_keys if settings.api_keys else ())
    if settings.rate_limit:
        from flask_limiter import Limiter

        def budget_owner() -> str:
            key_id = caller_key_id(keys)
            return f"key:{key_id}" if key_id else f"address:{request.remote_addr or '-'}"

        # Registered before the key check, so failed keys spend their address's budget too.
        Limiter(budget_owner, app=app, application_limits=[settings.rate_limit],
                application_limits_exempt_when=lambda: not needs_key(request, settings) or request.path == "/metrics",
                storage_uri=settings.rate_limit_storage_url, headers_enabled=True, strategy="moving-window",
                key_prefix="squad-qa")
    if keys:
        # The form checks its key itself, so a refusal is shown on the page rather than as JSON.
        app.before_request(lambda: None if request.endpoint in FORM_ENDPOINTS else check_key(keys, settings))
    if settings.cors_origins:
        from flask_cors import CORS

        CORS(app, resources={r"/v1/*": {"origins": list(settings.cors_origins)}}, allow_headers=CORS_HEADERS,
             expose_headers=CORS_EXPOSED, methods=["GET", "POST", "OPTIONS"], max_age=600)
    return keys
