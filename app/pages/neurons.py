"""Neurons (/neurons): a neuron database built from a corpus scan — snippets, patterns, similar neurons, search."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.neurons  # noqa: F401 - registers the page's callbacks
from analysis.params import url_int
from analysis.runtime import get_runtime
from callbacks.common import model_labels
from callbacks.neurons import initial_view
from components.feedback import error_alert, loading
from components.figures import empty_figure, graph
from components.forms import field
from components.jobs import job_panel
from components.pickers import model_picker
from components.urlstate import url_state

WAITING = "The neuron's {} appear here once a layer and a neuron are picked (and the index is ready)."
dash.register_page(__name__, path="/neurons", name="Neurons", title="Glassbox · Neurons")

CORPORA = [("training", "mixed (prose, code, scripture…)"), ("prose", "prose"), ("code", "code"),
           ("scripture", "scripture"), ("jargon", "jargon"), ("fortunes", "fortunes")]


def _label(text: str) -> dbc.Label:
    return dbc.Label(text, className="small text-muted mb-0")


def layout(**query: str) -> html.Div:
    runtime = get_runtime()
    settings = runtime.settings
    model = query.get("model") if query.get("model") in settings.models else settings.default_model
    view = initial_view(model)
    layers = [o["value"] for o in view["layers"]]
    layer = query.get("layer") if query.get("layer") in layers else (layers[len(layers) // 2] if layers else None)
    neuron = url_int(query.get("neuron"), 0, 0)
    whole = query.get("whole") == "1"
    llm_ready = bool(settings.openai_base_url)
    controls = dbc.Row(
        [
            dbc.Col(model_picker("neurons", settings.models, model, model_labels()), md=3),
            dbc.Col([_label("Layer"), dcc.Dropdown(id="neurons-layer", options=view["layers"], value=layer,
                                                   clearable=False)], md=2),
            dbc.Col(field("neurons-neuron", "Neuron", neuron, hint="0 to the layer's width - 1", width="100%"), md=1),
            dbc.Col([_label("Jump to a top neuron of this layer"),
                     dcc.Dropdown(id="neurons-top", placeholder="ranked by…", optionHeight=28)], md=4),
            dbc.Col([_label("Rank by"), dbc.RadioItems(id="neurons-sort", value="max", inline=True,
                                                       options=[{"label": "max", "value": "max"},
                                                                {"label": "range", "value": "range"},
                                                                {"label": "density", "value": "density"}],
                                                       className="small")], md="auto"),
        ],
        className="g-3 mb-2 align-items-end",
    )
    neuron_tab = html.Div(
        [
            html.Div([html.H5(id="neurons-title", className="mb-1 me-3 d-inline-block"),
                      dbc.Switch(id="neurons-whole", label="show whole sample", value=whole,
                                 className="d-inline-block small me-3"),
                      html.A("open in Tokens (this neuron's activation on a text)", id="neurons-tokens-link",
                             href="/tokens", className="small")], className="d-flex align-items-center"),
            html.Div(id="neurons-stats", className="mb-1"),
            html.Div(id="neurons-top-tokens", className="mb-2"),
            dbc.Row(
                [
                    dbc.Col([html.H6("Top-activating snippets", className="mt-1"),
                             loading(html.Div(id="neurons-snippets")),
                             html.H6("Try your own text", className="mt-3"),
                             html.Div([html.Div(field("neurons-try-text", "", "", numeric=False, width="100%",
                                                      placeholder="type a text and press Enter", debounce=False),
                                                className="flex-grow-1"),
                                       dbc.Button("Run", id="neurons-try-run", size="sm", color="primary",
                                                  className="ms-2 align-self-start")], className="d-flex"),
                             loading(html.Div(id="neurons-try-result", className="mt-1"))], lg=7),
                    dbc.Col(
                        [
                            dbc.Card(dbc.CardBody([
                                html.H6("Explanation"),
                                html.Div(id="neurons-summary", className="small mb-2"),
                                html.Div([dbc.Button("Ask the LLM", id="neurons-llm-button", size="sm", outline=True,
                                                     color="secondary", disabled=not llm_ready, className="me-2"),
                                          html.Span("" if llm_ready else "off: set OPENAI_BASE_URL in config.py",
                                                    className="text-muted small")]),
                                loading(html.Div(id="neurons-llm", className="small mt-2 fst-italic")),
                            ]), className="mb-2"),
                            html.H6("Similar neurons (symmetric: cosine over sampled tokens, Jaccard of top tokens)"),
                            html.Div(id="neurons-similar", className="gb-similar"),
                        ],
                        lg=5,
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col([loading(graph(empty_figure(WAITING.format("token-pattern graph")), "neurons-graph",
                                           "neuron-graph", 320)),
                             html.Div(id="neurons-patterns")], lg=7),
                    dbc.Col([graph(empty_figure(WAITING.format("activation quantiles")), "neurons-quantiles",
                                   "neuron-quantiles", 230),
                             graph(empty_figure(WAITING.format("logit effects")), "neurons-logits", "neuron-logits",
                                   460)], lg=5),
                ],
                className="mt-2",
            ),
        ]
    )
    search_tab = html.Div([
        dbc.InputGroup([dbc.Input(id="neurons-search", placeholder="token, e.g.  the  or  def", debounce=False),
                        dbc.Button("Search", id="neurons-search-button", color="primary")], size="sm",
                       className="mb-2 w-50"),
        html.Div("Neurons whose highest activations most often fall on this token (with or without a leading space).",
                 className="text-muted small mb-2"),
        loading(html.Div(id="neurons-search-results")),
    ], className="pt-2")
    compare_tab = html.Div([
        dbc.Row([
            dbc.Col([_label("Second layer"), dcc.Dropdown(id="neurons-layer-b", options=view["layers"],
                                                          value=query.get("layer_b") or layer)], md=2),
            dbc.Col(field("neurons-neuron-b", "Second neuron", url_int(query.get("neuron_b"), 1, 0), width="100%"),
                    md=2),
        ], className="g-3 mb-2"),
        loading(html.Div(id="neurons-compare")),
        html.Div(graph(None, "neurons-compare-figure", "neuron-compare", 320), id="neurons-compare-figure-box",
                 style={"display": "none"}),
    ], className="pt-2")
    build_tab = html.Div([
        html.Div(id="neurons-index-summary", className="mb-3"),
        dbc.Row([
            dbc.Col([_label("Corpus"), dcc.Dropdown(id="neurons-build-corpus", value="training", clearable=False,
                                                    options=[{"label": b, "value": a} for a, b in CORPORA]),
                     dbc.FormFeedback(type="invalid", id="neurons-build-corpus-feedback", className="gb-feedback")], md=3),
            dbc.Col(field("neurons-build-tokens", "Tokens to scan", 20000, hint="16-10,000,000", width="100%"), md=2),
            dbc.Col(field("neurons-build-layers", "Layers (e.g. 0-5,12; empty = all)", "", numeric=False,
                          width="100%"), md=2),
        ], className="g-3 align-items-end mb-2"),
        job_panel("neurons-build", "Build index"),
        html.Div("The build runs on the server and checkpoints; a cancelled build resumes where it stopped, and "
                 "another user opening the page sees the same build. CLI: make index ARGS='--model MODEL --tokens 20000'.",
                 className="text-muted small mt-2"),
    ], className="pt-2")
    return html.Div(
        [
            url_state("neurons", {"model": model, "layer": layer, "neuron": neuron}),
            html.Div([html.H4("Neurons", className="mb-0 me-3"),
                      html.Span("top-activating snippets, token patterns, similar neurons and token search, from a "
                                "corpus scan · JSON API at ", className="text-muted small"),
                      html.A("/api/v1/docs", href="/api/v1/docs", className="small ms-1", target="_blank")],
                     className="d-flex align-items-baseline mb-2"),
            error_alert("neurons"),
            controls,
            dbc.Tabs([
                dbc.Tab(neuron_tab, label="Neuron", tab_id="neuron"),
                dbc.Tab(search_tab, label="Search by token", tab_id="search"),
                dbc.Tab(compare_tab, label="Compare", tab_id="compare"),
                dbc.Tab(build_tab, label="Index", tab_id="index"),
            ], id="neurons-tabs", active_tab=query.get("tab") if query.get("tab") in ("search", "compare", "index") else "neuron"),
        ]
    )
