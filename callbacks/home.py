"""Home page: status of models, device, memory; load a model on demand."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, callback, ctx, no_update

from analysis.models import resolve_device
from analysis.runtime import get_runtime
from callbacks.common import friendly, model_labels
from components.home_status import model_rows, status_table


def current_status() -> dict[str, Any]:
    import psutil
    import torch

    runtime = get_runtime()
    loaded = {info.model_id: info.as_dict() for info in runtime.registry.loaded()}
    accel = torch.cuda.memory_allocated() if torch.cuda.is_available() else None
    return {
        "device": str(resolve_device(runtime.settings.device)),
        "rss_bytes": psutil.Process().memory_info().rss,
        "run_cache_bytes": runtime.runs.total_bytes(),
        "run_cache_entries": len(runtime.runs),
        "run_cache_limit": runtime.settings.run_cache_bytes,
        "accelerator_bytes": accel,
        "models": model_rows(runtime.settings.models, loaded, model_labels()),
    }


@callback(
    Output("home-status", "children"),
    Output("home-error", "children"),
    Output("home-error", "is_open"),
    Input("home-refresh", "n_intervals"),
    Input({"type": "home-load", "model": ALL}, "n_clicks"),
)
def refresh_status(_ticks: int, _clicks: list) -> tuple:
    trigger = ctx.triggered_id
    if isinstance(trigger, dict) and any(_clicks or []):
        try:
            get_runtime().model(trigger["model"])
        except Exception as exc:  # noqa: BLE001 - shown to the user
            return status_table(current_status()), friendly(exc), True
    return status_table(current_status()), no_update, no_update


__all__ = ["refresh_status", "dbc"]
