"""Regions (/regions): NRAG heatmaps and graphs -- LLM-MRI's science, interactive and cached."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.regions  # noqa: F401 - registers the page's callbacks
from analysis.params import url_int
from analysis.regions import POOLING_LABELS, POOLINGS
from analysis.runtime import get_runtime
from analysis.settings import EMBEDDED_ENCODER
from callbacks.common import model_labels
from callbacks.regions import default_pooling
from components import regions_controls
from components.feedback import error_alert, loading
from components.figures import empty_figure, graph
from components.urlstate import url_state

dash.register_page(__name__, path="/regions", name="Regions", title="Glassbox · Regions")
P = "regions"


def layout(**query: str) -> html.Div:
    settings = get_runtime().settings
    models = list(settings.models)
    model = query.get("model") if query.get("model") in models else (EMBEDDED_ENCODER if EMBEDDED_ENCODER in models
                                                                    else settings.default_model)
    pooling = query.get("pooling") if query.get("pooling") in POOLINGS else default_pooling(model)
    method = query.get("method") if query.get("method") in ("pca", "svd", "umap") else "pca"
    source = query.get("source") if query.get("source") in ("builtin", "upload", "saved", "hub") else "builtin"
    n = url_int(query.get("n"), 100, 2, settings.max_dataset_rows)
    k = url_int(query.get("k"), 2, 2, 64)
    grid_size = url_int(query.get("grid"), 10, 2, 50)
    layer = url_int(query.get("layer"), None, 0, 200)  # None: open on the layer that separates the classes best
    controls = dbc.Col([
        regions_controls.dataset_card(source, n, settings.max_dataset_rows, settings.max_upload_bytes / 1e6),
        regions_controls.extraction_card(models, model, model_labels(), pooling, POOLING_LABELS),
        html.Div(id=f"{P}-pooling-note", className="small text-warning mb-2"),
        regions_controls.reduction_card(method, k, grid_size, 42, 0.3),
    ], md=3)
    views = dbc.Col([
        error_alert(P),
        regions_controls.view_controls(7, layer or 0),
        loading(graph(empty_figure("Load a dataset and run the extraction."), f"{P}-heatmap", "regions-heatmap")),
        html.Div(graph(None, f"{P}-scatter-graph", "regions-scatter"), id=f"{P}-scatter-box", style={"display": "none"}),
        html.Hr(),
        regions_controls.graph_controls(),
        loading(graph(empty_figure("The graph appears after the extraction."), f"{P}-graph", "regions-graph")),
        dbc.Row([
            dbc.Col([html.H6("Graph metrics", className="mt-2"), loading(html.Div(id=f"{P}-metrics"))], md=4),
            dbc.Col(graph(None, f"{P}-degree", "regions-degree"), md=8),
        ], className="g-3"),
        html.Hr(),
        html.Div([html.H6("Classifier: reduced layers vs full last layer", className="d-inline me-3"),
                  dbc.Button("Evaluate", id=f"{P}-eval-run", size="sm", color="outline-primary")]),
        loading(html.Div(id=f"{P}-eval", className="mt-2")),
    ], md=9)
    return html.Div([
        html.H4("Regions", className="mb-0"),
        html.P("Which regions of each layer a category of text activates, and how the regions connect across "
               "layers (NRAG, after LLM-MRI). Pooled hidden states → per-layer reduction → grid of regions.",
               className="text-muted small"),
        dcc.Store(id=f"{P}-dataset"), dcc.Store(id=f"{P}-acts"), dcc.Store(id=f"{P}-reduced"),
        dcc.Store(id=f"{P}-url-layer", data=layer),
        url_state(P, {"model": model, "pooling": pooling, "method": method, "k": k, "grid": grid_size, "n": n}),
        dbc.Row([controls, views], className="g-4"),
    ])
