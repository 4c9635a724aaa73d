"""The HTML form pages: their template variables and what a form's POST must be (the question form
and the feedback form share both)."""

from __future__ import annotations

from typing import Any

from flask import request

from serve.schema import ApiError
from serve.security import FORM_TYPES, check_key


def form_page(state: Any, **values: Any) -> dict[str, Any]:
    """index.html's variables for a Service `state`, with `values` set."""
    page = {
        "question": "",
        "context": "",
        "result": None,
        "error": None,
        "info": state.info,
        "limits": state.settings,
        "abstain": False,
        "needs_key": bool(state.keys),
        "feedback_on": state.settings.feedback,
        "thanks": None,
    }
    page.update(values)
    return page


def check_form_post(state: Any) -> None:
    """A form's POST goes on only as a web form, with a valid key when keys are on (ApiError otherwise)."""
    if request.mimetype not in FORM_TYPES:
        raise ApiError(415, "unsupported_media_type", "the form must be posted as a web form")
    if state.keys:
        check_key(state.keys, state.settings)
