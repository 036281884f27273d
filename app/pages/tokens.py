"""Tokens (/tokens): read samples token by token — predictions, loss, attention, similarities, activations."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.tokens  # noqa: F401 - registers the page's callbacks
from analysis.runtime import get_runtime
from callbacks.common import model_labels, sample_rows
from callbacks.tokens import initial_state
from components.feedback import error_alert, loading, running_line
from components.pickers import picker_row
from components.tokens_controls import controls, download_buttons, generate_box
from components.urlstate import url_state

dash.register_page(__name__, path="/tokens", name="Tokens", title="Glassbox · Tokens")


def layout(**query: str) -> html.Div:
    runtime = get_runtime()
    settings = runtime.settings
    state = initial_state(query)
    model = query.get("model") or settings.default_model
    samples = [s for s in (query.get("sample") or "").split(",") if s] or [runtime.samples.default_sample_id()]
    copy = html.Div([dbc.Label("Copy", className="small text-muted mb-0 d-block"),
                     dcc.Clipboard(id="tokens-copy", title="Copy the open samples' text",
                                   className="btn btn-sm btn-outline-secondary")], className="gb-picker")
    tabs = dbc.Tabs(
        [dbc.Tab(label="Selected token", tab_id="token"), dbc.Tab(label="Attention", tab_id="attention"),
         dbc.Tab(label="Histogram", tab_id="hist"), dbc.Tab(label="Scatter", tab_id="scatter"),
         dbc.Tab(label="Generate", tab_id="generate"), dbc.Tab(label="Keys", tab_id="keys")],
        id="tokens-tabs", active_tab=state["tab"],
    )
    left = dbc.Col([
        html.Div([html.Div(id="tokens-legend", className="me-3"), html.Span(id="tokens-notes", className="small text-muted")],
                 className="d-flex flex-wrap align-items-center mb-2"),
        running_line("tokens-loading"),
        loading(html.Div(id="tokens-strips", className="gb-strips")),
        download_buttons(),
    ], lg=7, className="mb-3")
    right = dbc.Col(html.Div([tabs, html.Div(id="tokens-panel", className="gb-panel pt-2"), generate_box()],
                             className="gb-side"), lg=5)
    return html.Div(
        [
            html.Div([html.H4("Tokens", className="mb-0 me-3"),
                      html.Span("Click a token to select it; ↑/↓ change layer, ←/→ move the selection "
                                "(all shortcuts under the Keys tab).", className="text-muted small")],
                     className="d-flex align-items-baseline mb-2"),
            error_alert("tokens"),
            picker_row("tokens", settings.models, model, sample_rows(runtime), samples, "", model_labels(),
                       multi_sample=True, extra=[copy]),
            controls(state),
            dbc.Row([left, right], className="g-3"),
            dcc.Store(id="tokens-meta"),
            dcc.Store(id="tokens-selected", data={"s": state["s"], "i": state["t"]}),
            dcc.Store(id="tokens-paint"),
            dcc.Store(id="tokens-multiply-ok"),
            html.Div(id="tokens-paint-sink", style={"display": "none"}),
            url_state("tokens", {}),
        ],
        className="gb-tokens",
    )
