"""Glue shared by every page: URL state sync, picker toggles, text resolution, error messages."""

from __future__ import annotations

import logging
from typing import Any

from dash import ALL, MATCH, Input, Output, State, callback, clientside_callback, no_update  # noqa: F401

from analysis.corpus import CorpusError, SampleNotFound
from analysis.errors import GlassboxError
from analysis.runtime import Runtime, get_runtime
from components.pickers import USER_SAMPLE

log = logging.getLogger("glassbox")

# One clientside callback for every page: mirror the page's state store into the URL query.
clientside_callback(
    """
    function(state) {
        if (!state) { return window.dash_clientside.no_update; }
        const params = new URLSearchParams();
        Object.keys(state).forEach(function (k) {
            const v = state[k];
            if (v !== null && v !== undefined && v !== "") { params.set(k, String(v)); }
        });
        const qs = params.toString();
        const url = window.location.pathname + (qs ? "?" + qs : "") + window.location.hash;
        if (url !== window.location.pathname + window.location.search + window.location.hash) {
            window.history.replaceState(window.history.state, "", url);
        }
        return qs;
    }
    """,
    Output({"type": "url-state-sink", "page": MATCH}, "children"),
    Input({"type": "url-state", "page": MATCH}, "data"),
)


def register_picker_callbacks(page: str) -> None:
    """Show the text area when "your own text" is picked on ``page``."""

    @callback(Output(f"{page}-text-collapse", "is_open"), Input(f"{page}-sample", "value"))
    def _toggle_text(sample: Any) -> bool:
        if isinstance(sample, list):
            return USER_SAMPLE in sample
        return sample == USER_SAMPLE


def resolve_text(sample_id: str | None, user_text: str | None, runtime: Runtime | None = None) -> str:
    """The text of a picked sample, or the user's own text; errors are clear GlassboxErrors."""
    runtime = runtime or get_runtime()
    if sample_id == USER_SAMPLE or not sample_id:
        return runtime.check_text(user_text)
    try:
        return runtime.samples.get(sample_id).text
    except SampleNotFound as exc:
        raise GlassboxError(f"Unknown sample '{sample_id}': pick one from the list.") from exc


def sample_rows(runtime: Runtime | None = None) -> list[tuple[str, str, str]]:
    """(sample_id, source, title) for the sample picker."""
    runtime = runtime or get_runtime()
    return [(s.sample_id, s.source, s.title) for group in runtime.samples.sources().values() for s in group]


def friendly(exc: BaseException) -> str:
    """The message a user sees: ours as is, anything else named and logged with its traceback."""
    if isinstance(exc, GlassboxError | CorpusError | ValueError):
        return str(exc)
    log.exception("Unexpected error in a callback", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}: {str(exc)[:200]}). The server is still running; try again."


def model_labels(runtime: Runtime | None = None) -> dict[str, str]:
    from analysis.embedded import EMBEDDED_LABELS

    return dict(EMBEDDED_LABELS)
