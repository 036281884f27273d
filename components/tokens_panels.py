"""Panels and figures of the Tokens page: predictions, histograms, scatter/density, token header.

Plain data in (dicts/lists from the callbacks), Dash components and plotly figures out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import html

from components.figures import MEDIAN_COLOUR, SELECTED_COLOUR, empty_figure, themed
from components.tokens_strip import token_label

OUTLIER_COLOUR = "#d62728"


def token_header(sample_title: str, pos: int, token: str, n_tokens: int) -> html.Div:
    return html.Div(
        [html.Span("Selected token ", className="text-muted small"),
         html.Code(token_label(token), className="gb-tok-big"),
         html.Span(f" #{pos} of {n_tokens} · {sample_title}", className="text-muted small")],
        className="mb-2",
    )


def prediction_panel(panel: dict[str, Any] | None, message: str | None = None) -> html.Div:
    """Top-5 next-token predictions as probability bars; the true next token is marked ✓."""
    if panel is None:
        return html.Div(message or "No predictions for this model.", className="text-muted small")
    rows = []
    for p in panel["top"]:
        mark = "✓ " if p["is_true"] else ""
        rows.append(html.Tr([
            html.Td(html.Code(mark + token_label(p["token"])), className="gb-pred-tok" + (" gb-true" if p["is_true"] else "")),
            html.Td(dbc.Progress(value=100 * p["prob"], color="success" if p["is_true"] else "primary",
                                 className="gb-pred-bar"), style={"width": "60%"}),
            html.Td(f"{p['prob']:.3f}", className="small text-end font-monospace"),
        ]))
    if panel["true_token"] is None:
        foot = html.Div("Last token: there is no true next token.", className="small text-muted")
    else:
        in_top = any(p["is_true"] for p in panel["top"])
        foot = html.Div(
            [html.Span("True next token "), html.Code(token_label(panel["true_token"])),
             html.Span(f": p = {panel['true_prob']:.4f}, rank {panel['true_rank']}"
                       f"{'' if in_top else ' (not in the top 5)'}, loss {panel['loss']:.3f} nats")],
            className="small",
        )
    return html.Div([html.Div("Top-5 next-token predictions", className="small fw-semibold mb-1"),
                     html.Table(html.Tbody(rows), className="table table-sm mb-1 gb-pred"), foot],
                    id="tokens-predictions")


def histogram_figure(hist: dict[str, Any], title: str) -> go.Figure:
    """Median token's histogram (orange base), selected token's on top (blue), outliers, dimension line."""
    edges = np.asarray(hist["edges"], dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    fig = go.Figure()
    fig.add_bar(x=centres, y=hist["median_counts"], width=width, marker_color=MEDIAN_COLOUR, opacity=0.75,
                name=f"median token #{hist['median_index']}")
    fig.add_bar(x=centres, y=hist["selected_counts"], width=width, marker_color=SELECTED_COLOUR, opacity=0.6,
                name=f"selected token #{hist['selected_index']}")
    if hist["outlier_dims"]:
        fig.add_scatter(x=hist["outlier_values"], y=[0] * len(hist["outlier_dims"]), mode="markers",
                        marker=dict(symbol="line-ns-open", size=14, color=OUTLIER_COLOUR, line=dict(width=2)),
                        name="outliers (IQR×3 per sign)", customdata=hist["outlier_dims"],
                        hovertemplate="dim %{customdata}: %{x:.4g}<extra></extra>")
    if hist["dim"] is not None:
        fig.add_vline(x=hist["dim_value"], line=dict(color="black", dash="dash"),
                      annotation_text=f"dim {hist['dim']}", annotation_position="top")
    fig.update_layout(barmode="overlay", bargap=0, height=300, legend=dict(orientation="h", y=-0.25),
                      xaxis_title="activation value", yaxis_title="dimensions", margin=dict(t=40, b=40))
    return themed(fig, title)


def outlier_list(dims: Sequence[int], values: Sequence[float], limit: int = 12) -> html.Div:
    if not dims:
        return html.Div("No outliers (IQR × 3, negatives and positives separately).", className="small text-muted")
    items = ", ".join(f"{d} ({v:.3g})" for d, v in list(zip(dims, values, strict=True))[:limit])
    more = f" … +{len(dims) - limit}" if len(dims) > limit else ""
    return html.Div([html.Span(f"{len(dims)} outlier dimensions: ", className="fw-semibold"), items + more],
                    className="small", id="tokens-outliers")


def density_figure(dens: dict[str, Any], dim: int | None, title: str) -> go.Figure:
    """All tokens as a density over (dimension, value); selected and median tokens and outliers on top."""
    counts = np.asarray(dens["counts"])
    if counts.size == 0:
        return empty_figure("No activations.")
    edges = np.asarray(dens["value_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    d = counts.shape[1]
    fig = go.Figure()
    # log(1+count) quantized to uint8 levels: 1 byte per cell keeps the figure small.
    logc = np.log1p(counts)
    levels = np.round(logc * (255 / max(float(logc.max()), 1e-9))).astype(np.uint8)
    fig.add_heatmap(z=levels, x=np.arange(d, dtype=np.int16), y=centres.astype(np.float32),
                    colorscale=[[0, "rgba(255,255,255,0)"], [0.01, "#eceff1"], [1, "#37474f"]], showscale=False,
                    name="all tokens", hovertemplate="dim %{x}, value ≈ %{y:.3g}<extra>all tokens</extra>")
    xs = np.arange(d, dtype=np.int16)
    fig.add_scattergl(x=xs, y=np.asarray(dens["median_values"], dtype=np.float32), mode="markers",
                      marker=dict(size=3, color=MEDIAN_COLOUR), name="median token")
    fig.add_scattergl(x=xs, y=np.asarray(dens["selected_values"], dtype=np.float32), mode="markers",
                      marker=dict(size=4, color=SELECTED_COLOUR), name="selected token")
    hi = dens["highlighted"]
    if hi:
        sel = np.asarray(dens["selected_values"])
        fig.add_scatter(x=hi, y=sel[hi].tolist(), mode="markers", name="outlier dims",
                        marker=dict(size=10, color="rgba(0,0,0,0)", line=dict(color=OUTLIER_COLOUR, width=2)))
    chosen = dens.get("chosen") or []
    if chosen:
        sel = np.asarray(dens["selected_values"])
        fig.add_scatter(x=chosen, y=sel[chosen].tolist(), mode="markers+text", name="highlighted dims",
                        text=[str(c) for c in chosen], textposition="top center",
                        marker=dict(size=11, symbol="diamond-open", color="#2ca02c", line=dict(width=2)))
    if dim is not None and 0 <= dim < d:
        fig.add_vline(x=dim, line=dict(color="black", dash="dot"))
    pad = 0.08 * (edges[-1] - edges[0])
    fig.update_yaxes(range=[float(edges[0] - pad), float(edges[-1] + pad)])  # autoscale (double-click) shows all
    fig.update_layout(height=340, xaxis_title="dimension", yaxis_title="value",
                      legend=dict(orientation="h", y=-0.22), margin=dict(t=40, b=40))
    return themed(fig, title)


SHORTCUTS = [
    ("← / →", "previous / next token"),
    ("↑ / ↓", "next / previous layer"),
    ("[ / ]", "previous / next head"),
    ("m", "toggle mean over heads"),
    ("n", "show / hide newline tokens"),
    ("1 … 6", "tool: predictions, loss, attention, similarity, sum, dimension"),
    ("o", "toggle opposite attention (to the token)"),
    ("r", "cycle RoPE mode: full → applied → not applied"),
]


def shortcuts_help() -> html.Div:
    """The keyboard shortcuts, documented in the page (handled by assets/tokens.js)."""
    rows = [html.Tr([html.Td(html.Kbd(k)), html.Td(v, className="small")]) for k, v in SHORTCUTS]
    return html.Div(
        [html.Div("Keyboard shortcuts (when no input has focus; in the layer/head boxes ↑/↓ step the value)",
                  className="small fw-semibold mb-1"),
         html.Table(html.Tbody(rows), className="table table-sm gb-shortcuts mb-0")],
        id="tokens-shortcuts",
    )
