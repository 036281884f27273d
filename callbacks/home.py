"""Home page: status of models, device, memory; load a model on demand."""

from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, ctx

from analysis.runtime import get_runtime
from callbacks.common import model_labels, page_callback
from components.home_status import model_rows, status_table


def current_status() -> dict[str, Any]:
    runtime = get_runtime()
    status = runtime.status()
    loaded = {info["model_id"]: info for info in status["loaded"]}
    return status | {"models": model_rows(runtime.settings.models, loaded, model_labels())}


@page_callback("home", Output("home-status", "children"), Input("home-refresh", "n_intervals"),
               Input({"type": "home-load", "model": ALL}, "n_clicks"))
def refresh_status(_ticks: int, clicks: list) -> Any:
    """The status table; a Load button starts that model's load as a job (its progress shows under the navbar)."""
    trigger = ctx.triggered_id
    if isinstance(trigger, dict) and any(clicks or []):
        get_runtime().start_loading(trigger["model"])
    return status_table(current_status())
