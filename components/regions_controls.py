"""Regions controls: dataset source, extraction (model, pooling, run/cancel/progress), reduction and
view pickers, downloads, and the metrics tables. Plain data in, Dash components out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from components.forms import field
from components.jobs import job_panel
from components.pickers import model_picker

P = "regions"


def _label(text: str, for_id: str) -> dbc.Label:
    return dbc.Label(text, html_for=for_id, className="small text-muted mb-0")


def dataset_card(source: str, n_per_label: int, max_rows: int, max_upload_mb: float) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.H6("1 · Labeled dataset", className="mb-2"),
        dbc.RadioItems(id=f"{P}-source", value=source, className="small", options=[
            {"label": "Built-in (prose vs code vs scripture)", "value": "builtin"},
            {"label": "Upload CSV / JSONL", "value": "upload"},
            {"label": "Saved HF Dataset folder", "value": "saved"},
            {"label": "HF dataset name (online)", "value": "hub"},
        ]),
        html.Div(field(f"{P}-n", "Texts per label", n_per_label, hint=f"2-{max_rows // 3:,}", width="100%"),
                 id=f"{P}-builtin-box", className="mt-2"),
        html.Div([dcc.Upload(id=f"{P}-upload", max_size=int(max_upload_mb * 1e6), multiple=False,
                             children=html.Div(["Drop or ", html.A("choose"), " a .csv/.jsonl with text,label"]),
                             className="gb-upload small"),
                  html.Div(f"≤ {max_upload_mb:.0f} MB, ≤ {max_rows:,} rows", className="small text-muted")],
                 id=f"{P}-upload-box", className="mt-2"),
        html.Div(field(f"{P}-saved", "Folder", "", placeholder="/path/to/dataset", numeric=False, width="100%"),
                 id=f"{P}-saved-box", className="mt-2"),
        html.Div([field(f"{P}-hub", "Name", "", placeholder="ag_news", numeric=False, width="100%"),
                  field(f"{P}-split", "Split", "test", numeric=False, width="100%")],
                 id=f"{P}-hub-box", className="mt-2"),
        dbc.Button("Load dataset", id=f"{P}-load", size="sm", color="secondary", className="mt-2"),
        html.Div(id=f"{P}-dataset-info", className="small mt-2"),
    ]), className="mb-3")


def extraction_card(models: Sequence[str], model: str, labels: Mapping[str, str], pooling: str,
                    pooling_labels: Mapping[str, str]) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.H6("2 · Activations", className="mb-2"),
        model_picker(P, models, model, labels),
        _label("Pooling", f"{P}-pooling"),
        dbc.RadioItems(id=f"{P}-pooling", value=pooling, className="small",
                       options=[{"label": text, "value": key} for key, text in pooling_labels.items()]),
        html.Div(job_panel(f"{P}-extract", "Run extraction"), className="mt-2"),
    ]), className="mb-3")


def reduction_card(method: str, n_components: int, grid: int, random_state: int, threshold: float) -> dbc.Card:
    def num(id_: str, label: str, value: Any, hint: str) -> dbc.Col:
        return dbc.Col(field(f"{P}-{id_}", label, value, hint=hint, width="100%"), width=6)

    return dbc.Card(dbc.CardBody([
        html.H6("3 · Reduction", className="mb-2"),
        _label("Method", f"{P}-method"),
        dcc.Dropdown(id=f"{P}-method", value=method, clearable=False, options=[
            {"label": "PCA (LLM-MRI default)", "value": "pca"}, {"label": "SVD", "value": "svd"},
            {"label": "UMAP (slow first time)", "value": "umap"}]),
        dbc.Row([num("k", "Components", n_components, "2-64"),
                 num("grid", "Grid size", grid, "2-50"),
                 num("seed", "Random state", random_state, "0 or more; empty = random"),
                 num("threshold", "Spearman threshold (>2 dims)", threshold, "-1 to 0.99")],
                className="g-2 mt-1"),
    ]), className="mb-3")


def layer_marks(labels: Sequence[str]) -> dict[int, str]:
    """Slider marks that stay readable on deep models: every layer up to 16 states, else every 5th."""
    n = len(labels)
    step = 1 if n <= 16 else 5
    return {i: labels[i] for i in range(n) if i % step == 0 or i == n - 1}


def view_controls(n_layers: int, layer: int) -> html.Div:
    return html.Div([
        dbc.Row([
            dbc.Col([_label("Layer", f"{P}-layer"),
                     dcc.Slider(id=f"{P}-layer", min=0, max=max(1, n_layers - 1), step=1, value=layer,
                                marks={i: str(i) for i in range(max(2, n_layers))}, updatemode="drag"),
                     html.Div(id=f"{P}-layer-note", className="small text-muted")], md=5),
            dbc.Col([_label("Heatmap categories", f"{P}-cats"),
                     dcc.Dropdown(id=f"{P}-cats", multi=True, options=[], value=[])], md=4),
            dbc.Col(dbc.Switch(id=f"{P}-scatter", label="show reduced points", value=False, className="mt-4"), md=3),
        ], className="g-3"),
    ])


def graph_controls(min_weight: Any = "") -> dbc.Row:
    return dbc.Row([
        dbc.Col([_label("Graph categories (one or two)", f"{P}-graph-cats"),
                 dcc.Dropdown(id=f"{P}-graph-cats", multi=True, options=[], value=[])], md=4),
        dbc.Col(field(f"{P}-min-weight", "Min. edge weight (texts per edge, drawing)", min_weight,
                      hint="empty = auto", width="100%"), md=2),
        dbc.Col(html.Div([
            dbc.Button("GraphML", id=f"{P}-dl-graphml", size="sm", color="outline-secondary", className="me-1"),
            dbc.Button("JSON", id=f"{P}-dl-json", size="sm", color="outline-secondary", className="me-1"),
            dbc.Button("Metrics CSV", id=f"{P}-dl-csv", size="sm", color="outline-secondary"),
            dcc.Download(id=f"{P}-download"),
        ], className="mt-3"), md=6, className="text-end"),
    ], className="g-3 mb-2")


METRIC_NOTES = {
    "center_of_mass": "mean over regions of (layer − layers/2): < 0 = the graph's regions sit in early layers",
    "center_of_strength": "Σ over layers of (std of region strength in the layer) × (layer − layers/2), LLM-MRI's "
                          "definition: < 0 = the uneven (concentrated) traffic is in early layers",
    "assortativity": "weighted degree assortativity: > 0 = busy regions link to busy regions",
    "density": "edges / possible directed edges",
}


def dataset_info(summary: Mapping[str, Any]) -> html.Div:
    counts = ", ".join(f"{k}: {v}" for k, v in summary["counts"].items())
    parts: list[Any] = [html.Strong(f"{summary['n']:,} texts"), f" · {counts}", html.Br(),
                        html.Span(summary["source"], className="text-muted")]
    for w in summary.get("warnings", []):
        parts += [html.Br(), html.Span(w, className="text-warning")]
    return html.Div(parts)


def metrics_table(metrics: Mapping[str, float]) -> dbc.Table:
    rows = [html.Tr([html.Td(k.replace("_", " "), title=METRIC_NOTES.get(k, ""),
                             className="gb-has-note" if k in METRIC_NOTES else ""),
                     html.Td(f"{v:.4g}" if isinstance(v, float) else str(v), className="text-end font-monospace")])
            for k, v in metrics.items()]
    rows += [html.Tr(html.Td(f"{k.replace('_', ' ')}: {note}", colSpan=2, className="text-muted"))
             for k, note in METRIC_NOTES.items() if k.startswith("center")]
    return dbc.Table(html.Tbody(rows), size="sm", bordered=False, striped=True, className="small mb-0",
                     id=f"{P}-metrics-table")


def classifier_table(rows: Sequence[Mapping[str, Any]], n_reduced: int, n_full: int) -> html.Div:
    head = html.Thead(html.Tr([html.Th("metric"), html.Th(f"reduced ({n_reduced} feats)"),
                               html.Th(f"full ({n_full} feats)"), html.Th("Δ full − reduced")]))
    body = html.Tbody([html.Tr([html.Td(r["metric"]), html.Td(f"{r['reduced']:.3f}"), html.Td(f"{r['full']:.3f}"),
                                html.Td(f"{r['delta_full_minus_reduced']:+.3f}")]) for r in rows])
    return dbc.Table([head, body], size="sm", className="small", id=f"{P}-eval-table")
