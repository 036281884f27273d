"""Circuits (/circuits): which heads, MLPs and earlier tokens produced this prediction?"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.circuits  # noqa: F401 - registers the page's callbacks
from analysis.circuits import DEFAULT_THRESHOLD, MAX_THRESHOLD, MIN_THRESHOLD, PATCH_SITE_LABELS
from analysis.runtime import get_runtime
from callbacks.circuits import DEFAULT_CORRUPTED, DEFAULT_PROMPT, TABS
from callbacks.common import model_labels, sample_rows
from components.export import export_bar
from components.feedback import error_alert, loading, running_line
from components.figures import graph
from components.forms import field
from components.jobs import job_panel
from components.pickers import USER_SAMPLE, picker_row
from components.urlstate import url_state

dash.register_page(__name__, path="/circuits", name="Circuits", title="Glassbox · Circuits")


def _attribution_tab() -> html.Div:
    return html.Div([
        html.Div(id="circuits-summary", className="small mb-2 gb-note"),
        dbc.Row([
            dbc.Col([loading(graph(None, "circuits-heads", "circuits-heads")),
                     html.Div([export_bar("circuits-heads", "circuits-heads"),
                               html.Span(id="circuits-head-link", className="small ms-3")])], md=5),
            dbc.Col([loading(graph(None, "circuits-layers", "circuits-layers")),
                     export_bar("circuits-layers", "circuits-layers")], md=7),
        ], className="g-2"),
        loading(graph(None, "circuits-strip", "circuits-strip")),
        export_bar("circuits-strip", "circuits-strip"),
        html.Div("Direct logit attribution: every term of the final residual stream read through the final norm "
                 "with its scale frozen at this run (TransformerLens's apply_ln); the terms sum to the logit. The strip "
                 "splits the heads' share by the source token each head read (attention-weighted values).",
                 className="small text-muted"),
    ], className="pt-2")


def _graph_tab(threshold: float) -> html.Div:
    marks = {v: f"{v:g}" for v in (0.01, 0.04, 0.1, 0.2, 0.3, 0.5)}
    return html.Div([
        dbc.Row([
            dbc.Col(html.Div([dbc.Label("Threshold", html_for="circuits-threshold", className="small text-muted mb-0"),
                              dcc.Slider(id="circuits-threshold", min=MIN_THRESHOLD, max=MAX_THRESHOLD, step=0.01,
                                         value=threshold, marks=marks, updatemode="mouseup")]), md=6),
            dbc.Col(dbc.Checklist(id="circuits-renorm", options=[{"label": "Renormalize after threshold", "value": 1}],
                                  value=[1], switch=True, className="small mt-3"), md="auto"),
        ], className="g-2 align-items-end"),
        html.Div(id="circuits-graph-note", className="small text-muted mb-1"),
        dbc.Row([
            dbc.Col([loading(graph(None, "circuits-graph", "circuits-graph")),
                     export_bar("circuits-graph", "circuits-graph")], md=9),
            dbc.Col(html.Div(id="circuits-graph-detail", className="small"), md=3),
        ], className="g-2"),
        html.Div("LLM-TT's information-flow routes (Ferrando & Voita 2024): each part of a residual update weighs "
                 "max(‖y‖₁ − ‖x − y‖₁, ε) normalised over the parts; edges above the threshold that reach the chosen "
                 "token's output. Moving the threshold never re-runs the model.", className="small text-muted"),
    ], className="pt-2")


def _patching_tab() -> html.Div:
    sites = [{"label": v, "value": k} for k, v in PATCH_SITE_LABELS.items()]
    return html.Div([
        dbc.Row([
            dbc.Col(html.Div([dbc.Label("Corrupted prompt (same token count)", html_for="circuits-corrupted",
                                        className="small text-muted mb-0"),
                              dbc.Textarea(id="circuits-corrupted", value=DEFAULT_CORRUPTED, rows=2, debounce=True,
                                           className="small font-monospace"),
                              dbc.FormFeedback(type="invalid", id="circuits-corrupted-feedback", className="gb-feedback")]), md=5),
            dbc.Col(field("circuits-noise-positions", "…or noise on positions", "", numeric=False, hint="e.g. 1-3",
                          width="120px"), md="auto"),
            dbc.Col(field("circuits-seed", "Noise seed", 0, hint="0-2147483647", width="90px"), md="auto"),
            dbc.Col(html.Div([dbc.Label("Patched site", html_for="circuits-patch-site", className="small text-muted mb-0"),
                              dcc.Dropdown(id="circuits-patch-site", options=sites, value="resid", clearable=False,
                                           style={"width": "250px"})], className="gb-picker"), md="auto"),
            dbc.Col(field("circuits-positions", "Positions", "", numeric=False, hint="all, or e.g. 0-5,9",
                          width="130px"), md="auto"),
        ], className="g-2 align-items-end mb-2"),
        html.Div("ROME's noise: Gaussian, 3 × the embedding's standard deviation, on the token embeddings of the "
                 "positions given (used when the corrupted prompt is empty). The metric is read at the last position: "
                 "the target's probability, or target − contrast with a contrast.", className="small text-muted mb-2"),
        job_panel("circuits-patch", "Run patching", extra=[
            html.Div([dbc.Label("Colour", html_for="circuits-patch-scale", className="small text-muted mb-0"),
                      dcc.Dropdown(id="circuits-patch-scale", value="recovered", clearable=False, style={"width": "230px"},
                                   options=[{"label": "recovered (0 corrupted, 1 clean)", "value": "recovered"},
                                            {"label": "raw metric", "value": "raw"}])],
                     className="gb-picker me-2")]),
        html.Div([graph(None, "circuits-patch-figure", "circuits-patching"),
                  export_bar("circuits-patch-figure", "circuits-patching")], id="circuits-patch-box",
                 style={"display": "none"}),
    ], className="pt-2")


def layout(**query: str) -> html.Div:
    runtime = get_runtime()
    settings = runtime.settings
    model = query.get("model") if query.get("model") in settings.models else settings.default_model
    sample = query.get("sample") or USER_SAMPLE
    models = [m for m in settings.models if "minilm" not in m.lower()] or settings.models
    tab = query.get("tab") if query.get("tab") in TABS else "attribution"
    try:
        threshold = min(MAX_THRESHOLD, max(MIN_THRESHOLD, float(query.get("threshold") or DEFAULT_THRESHOLD)))
    except ValueError:
        threshold = DEFAULT_THRESHOLD
    target_row = dbc.Row([
        dbc.Col(field("circuits-position", "Position", query.get("pos") or "", hint="empty = last",
                      width="120px"), md="auto"),
        dbc.Col(field("circuits-target", "Target", query.get("target") or "top", numeric=False,
                      hint="top · true · a token, e.g. ' Paris' · #id", width="170px"), md="auto"),
        dbc.Col(field("circuits-contrast", "Contrast (optional)", query.get("contrast") or "", numeric=False,
                      hint="target − contrast: a logit difference", width="170px"), md="auto"),
    ], className="g-2 mb-2 align-items-end")
    line = running_line("circuits-run")
    line.children[1].children = "Running the model on the prompt (once; every view after that reads the cached run)…"
    return html.Div([
        html.Div([html.H4("Circuits", className="mb-0 me-3"),
                  html.Span("Which heads, MLPs and earlier tokens produced this prediction?", className="text-muted small")],
                 className="d-flex align-items-baseline mb-2"),
        error_alert("circuits"),
        picker_row("circuits", models, model, sample_rows(runtime), sample, DEFAULT_PROMPT, model_labels()),
        target_row,
        line,
        dbc.Tabs([
            dbc.Tab(_attribution_tab(), label="Attribution", tab_id="attribution"),
            dbc.Tab(_graph_tab(threshold), label="Contribution graph", tab_id="graph"),
            dbc.Tab(_patching_tab(), label="Patching", tab_id="patching"),
        ], id="circuits-tabs", active_tab=tab),
        url_state("circuits", {}),
    ], className="gb-circuits")
