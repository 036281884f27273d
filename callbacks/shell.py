"""The shell's model-loading bar: polls the runtime's model-load jobs while one runs."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, callback

from analysis.runtime import get_runtime

HIDE, SHOW = {"display": "none"}, {}


def loading_status() -> tuple[dict[str, Any], int, str, bool]:
    """(style, percent, message, poll disabled) for the running model loads, if any."""
    running = [s for s in get_runtime().jobs.statuses() if s.key.startswith("model:") and s.running]
    if not running:
        return HIDE, 0, "", True
    status = running[0]
    p = status.progress
    percent = round(100 * p.fraction) if p.fraction is not None else 100
    return SHOW, percent, f"{status.title}: {p.label()} (the page fills in when it is ready)", False


@callback(Output("shell-model", "style"), Output("shell-model-progress", "value"), Output("shell-model-msg", "children"),
          Output("shell-model-poll", "disabled"), Input("shell-model-poll", "n_intervals"))
def poll_model_load(_ticks: int) -> tuple:
    return loading_status()


def register_model_loading(page: str) -> None:
    """When ``{page}-model`` changes to a model that is not loaded, load it as a job and show the bar."""

    @callback(Output("shell-model-poll", "disabled", allow_duplicate=True), Input(f"{page}-model", "value"),
              prevent_initial_call="initial_duplicate")
    def _start(model_id: str | None) -> bool:
        return get_runtime().start_loading(model_id) is None
