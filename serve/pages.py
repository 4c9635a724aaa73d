"""What the HTML form page shows: one place for its template variables (the form and the feedback form)."""

from __future__ import annotations

from typing import Any


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
