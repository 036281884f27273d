"""Lens (/lens): logit lens and tuned lens grids — at which layer does the prediction form?"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.lens  # noqa: F401 - registers the page's callbacks
from analysis.lens import DIVERGENCES, RESIDUALS, STATISTICS, TrainConfig
from analysis.params import url_int
from analysis.runtime import get_runtime
from callbacks.common import model_labels, sample_rows
from callbacks.lens import VIEWS, default_view
from components.feedback import error_alert, loading
from components.figures import graph
from components.forms import field
from components.jobs import job_panel
from components.lens_grid import SCALES
from components.pickers import picker_row
from components.urlstate import url_state

dash.register_page(__name__, path="/lens", name="Lens", title="Glassbox · Lens")


def _select(label: str, cid: str, options: dict[str, str], value: str, width: str = "220px") -> html.Div:
    return html.Div([dbc.Label(label, html_for=cid, className="small text-muted mb-0"),
                     dcc.Dropdown(id=cid, options=[{"label": v, "value": k} for k, v in options.items()],
                                  value=value, clearable=False, style={"width": width})], className="gb-picker")


def _pick(query: dict, key: str, allowed: dict, default: str) -> str:
    value = query.get(key)
    return value if value in allowed else default


def layout(**query: str) -> html.Div:
    runtime = get_runtime()
    settings = runtime.settings
    model = query.get("model") or settings.default_model
    sample = query.get("sample") or runtime.samples.default_sample_id()
    stat = _pick(query, "stat", STATISTICS, "kl_final")
    view = _pick(query, "view", VIEWS, default_view(model))
    scale = _pick(query, "scale", SCALES, "auto")
    residual = _pick(query, "residual", RESIDUALS, "resid")
    div = _pick(query, "div", DIVERGENCES, "js")
    start = url_int(query.get("start"), 0, 0, settings.max_tokens)
    width = query.get("width") or 64  # checked (and its bound named) by the page's callback
    models = [m for m in settings.models if "minilm" not in m.lower()] or settings.models
    controls = dbc.Row(
        [
            dbc.Col(_select("Colour = statistic", "lens-stat", STATISTICS, stat, "240px"), md="auto"),
            dbc.Col(_select("View", "lens-view", VIEWS, view, "210px"), md="auto"),
            dbc.Col(_select("Stream", "lens-residual", RESIDUALS, residual, "330px"), md="auto"),
            dbc.Col(_select("Divergence", "lens-div", DIVERGENCES, div, "200px"), md="auto", id="lens-div-col"),
            dbc.Col(_select("Colour scale", "lens-scale", SCALES, scale, "300px"), md="auto"),
            dbc.Col(html.Div([dbc.Label("Tuned lens", html_for="lens-source", className="small text-muted mb-0"),
                              dbc.Input(id="lens-source", value=query.get("source") or "", debounce=True, size="sm",
                                        placeholder="trained here · folder · hub id", style={"width": "260px"}),
                              dbc.FormFeedback(type="invalid", id="lens-source-feedback", className="gb-feedback")],
                             className="gb-picker"), md="auto"),
        ],
        className="g-2 mb-2 align-items-end",
    )
    window = dbc.Row(
        [
            dbc.Col(html.Div([dbc.Label("Window start (position)", html_for="lens-start", className="small text-muted mb-0"),
                              dcc.Slider(id="lens-start", min=0, max=max(start, 1), step=1, value=start,
                                         marks=None, updatemode="mouseup")]), md=6),
            dbc.Col(field("lens-width", "Width (positions)", width, hint="1-256", width="90px"), md="auto"),
            dbc.Col(html.Div([html.Span("Export grid", className="small text-muted me-2"),
                              dbc.ButtonGroup([dbc.Button(f, id=f"lens-export-{f.lower()}", size="sm", outline=True,
                                                          color="secondary", n_clicks=0,
                                                          title=f"Download the grid as {f} (paper theme)")
                                               for f in ("SVG", "PNG", "PDF")]),
                              dcc.Download(id="lens-download")], className="d-flex align-items-center"),
                    md="auto", className="ms-auto"),
        ],
        className="g-2 mb-2 align-items-end",
    )
    train = dbc.Card(
        dbc.CardBody([
            html.Div([html.B("Train a tuned lens", className="me-2"),
                      html.Span("tuned-lens's TunedLens + KL-to-final objective on the offline training corpus "
                                "(2,048 tokens a step); saved in tuned-lens format and used as the tuned lens above. "
                                "The job runs on the server: reloading the page or another user sees it.",
                                className="small text-muted")]),
            html.Div(job_panel("lens-train", "Train", extra=[
                field("lens-train-steps", "Steps", TrainConfig().steps, hint="1-5000", width="90px")]),
                className="mt-2"),
        ]),
        className="mt-3",
    )
    return html.Div(
        [
            html.Div([html.H4("Lens", className="mb-0 me-3"),
                      html.Span("What would the model predict if it stopped at this layer? Cell = top token; "
                                "hover for the top-10.", className="text-muted small")],
                     className="d-flex align-items-baseline mb-2"),
            error_alert("lens"),
            picker_row("lens", models, model, sample_rows(runtime), sample, "", model_labels()),
            controls,
            window,
            html.Div(id="lens-note", className="small text-muted mb-1"),
            loading(graph(None, "lens-grid", "lens-grid")),
            loading(graph(None, "lens-summary", "lens-summary", height=330)),
            train,
            url_state("lens", {}),
            dcc.Store(id="lens-focus", data=url_int(query.get("focus"), None, 0, settings.max_tokens)),
        ],
        className="gb-lens",
    )
