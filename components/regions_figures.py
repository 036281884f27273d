"""Regions figures from plain arrays/dicts: annotated heatmap grids, the reduced scatter, the NRAG
graph (plotly, fixed node positions, edges coloured by category), per-layer degree, classifier bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.figures import CATEGORY_COLOURS, empty_figure, themed

EDGE_WIDTH_BINS = 6


def category_colour(index: int) -> str:
    return CATEGORY_COLOURS[index % len(CATEGORY_COLOURS)]


def heatmap_figure(grids: Sequence[np.ndarray], categories: Sequence[str], layer: int, n_layers: int,
                   labels: Sequence[str] | None = None) -> go.Figure:
    """One annotated count grid per category for ``layer`` (cells [y, x]; y grows upwards). Both axes span
    exactly the grid's cells, square."""
    if not grids:
        return empty_figure("Pick at least one category.")
    size = grids[0].shape[0]
    name = labels[layer] if labels is not None and layer < len(labels) else str(layer)
    zmax = max(1, int(max(g.max() for g in grids)))
    fig = make_subplots(rows=1, cols=len(grids), subplot_titles=[f"{c}" for c in categories],
                        horizontal_spacing=0.06)
    for i, (grid, cat) in enumerate(zip(grids, categories, strict=True)):
        text = np.where(grid > 0, grid.astype(str), "")
        fig.add_trace(go.Heatmap(z=grid, text=text, texttemplate="%{text}", textfont=dict(size=10),
                                 colorscale="Blues", zmin=0, zmax=zmax, showscale=i == len(grids) - 1,
                                 colorbar=dict(title="texts", thickness=12),
                                 hovertemplate=f"{cat}<br>cell x=%{{x}}, y=%{{y}}<br>%{{z}} texts<extra></extra>",
                                 xgap=1, ygap=1), row=1, col=i + 1)
        fig.update_xaxes(title_text="component 1 bin", dtick=1 if size <= 20 else 5, range=[-0.5, size - 0.5],
                         row=1, col=i + 1, showgrid=False, constrain="domain")
        fig.update_yaxes(title_text="component 2 bin" if i == 0 else None, dtick=1 if size <= 20 else 5,
                         range=[-0.5, size - 0.5], row=1, col=i + 1, scaleanchor=f"x{i + 1 if i else ''}",
                         showgrid=False, constrain="domain")
    themed(fig, f"Regions of {name} (state {layer} of {n_layers - 1}: embed = block 0's input, "
                f"L{{i}} = block i's input, L{n_layers - 1} = the last block's output)")
    fig.update_layout(height=380, margin=dict(l=60, r=20, t=70, b=50))
    return fig


def scatter_figure(coords: np.ndarray, label_ids: np.ndarray, classes: Sequence[str], shown: Sequence[str],
                   layer: int, grid: int, hover: Sequence[str] | None = None) -> go.Figure:
    """The reduced points behind the grid, coloured by category, with the bin edges drawn."""
    fig = go.Figure()
    for c, name in enumerate(classes):
        if name not in shown:
            continue
        sel = label_ids == c
        fig.add_trace(go.Scattergl(x=coords[sel, 0], y=coords[sel, 1], mode="markers", name=name,
                                   marker=dict(size=6, color=category_colour(c), opacity=0.7),
                                   text=[hover[i] for i in np.nonzero(sel)[0]] if hover is not None else None,
                                   hovertemplate="%{text}<extra>" + name + "</extra>" if hover is not None else None))
    for axis, values in (("x", coords[:, 0]), ("y", coords[:, 1])):
        lo, hi = float(values.min()), float(values.max())
        for edge in np.linspace(lo, hi, grid + 1):
            line = dict(color="#cfd8dc", width=1)
            if axis == "x":
                fig.add_vline(x=float(edge), line=line, layer="below")
            else:
                fig.add_hline(y=float(edge), line=line, layer="below")
    themed(fig, f"Reduced points, layer {layer} (grid lines = region bins)")
    fig.update_layout(height=420, xaxis_title="component 1", yaxis_title="component 2", legend=dict(orientation="h"))
    return fig


def _edge_traces(edges: list[dict[str, Any]], pos: dict[str, tuple[float, float]], cat: str, colour: str,
                 offset: float, max_w: float) -> list[go.Scatter]:
    """Edges of one category, binned by weight into a few line widths (plotly has one width per trace)."""
    mine = [e for e in edges if e["weights"].get(cat, 0) > 0]
    if not mine:
        return []
    traces: list[go.Scatter] = []
    bins = np.linspace(0, max_w, EDGE_WIDTH_BINS + 1)
    for b in range(EDGE_WIDTH_BINS):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in mine:
            w = e["weights"][cat]
            if not (bins[b] < w <= bins[b + 1] or (b == 0 and w <= bins[1])):
                continue
            (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
            xs += [x0 + offset, x1 + offset, None]
            ys += [y0, y1, None]
        if xs:
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False, legendgroup=cat,
                                     line=dict(color=colour, width=0.6 + 5.4 * (b + 1) / EDGE_WIDTH_BINS),
                                     opacity=0.55))
    mx = [(pos[e["source"]][0] + pos[e["target"]][0]) / 2 + offset for e in mine]
    my = [(pos[e["source"]][1] + pos[e["target"]][1]) / 2 for e in mine]
    text = [f"{e['source']} → {e['target']}<br>" + "<br>".join(f"{k}: {v:g}" for k, v in e["weights"].items())
            for e in mine]
    traces.append(go.Scatter(x=mx, y=my, mode="markers", name=f"{cat} edges", legendgroup=cat,
                             marker=dict(size=7, color=colour, opacity=0.0001), text=text,
                             hovertemplate="%{text}<extra></extra>", showlegend=False))
    traces.append(go.Scatter(x=[None], y=[None], mode="lines", name=cat, legendgroup=cat,
                             line=dict(color=colour, width=4)))
    return traces


def graph_figure(payload: dict[str, Any], class_index: dict[str, int], height: int = 520) -> go.Figure:
    """The NRAG: layers top (embeddings) to bottom, nodes at fixed positions, size by degree,
    edges of each category in its colour (width ~ weight; hover a midpoint for both weights)."""
    nodes, edges = payload["nodes"], payload["edges"]
    if not nodes:
        return empty_figure("The graph has no nodes: lower the threshold or the minimum edge weight, or pick "
                            "another category.")
    pos = {n["id"]: (n["x"], n["y"]) for n in nodes}
    cats = payload["categories"]
    max_w = max([max(e["weights"].values()) for e in edges] or [1.0])
    span = max(n["x"] for n in nodes) - min(n["x"] for n in nodes) or 1.0
    fig = go.Figure()
    for i, cat in enumerate(cats):
        offset = (i - (len(cats) - 1) / 2) * span * 0.002  # side by side where both categories use an edge
        fig.add_traces(_edge_traces(edges, pos, cat, category_colour(class_index.get(cat, i)), offset, max_w))
    deg = np.array([n["degree"] for n in nodes], dtype=float)
    size = 6 + 22 * np.sqrt(deg / max(deg.max(), 1))
    fig.add_trace(go.Scatter(
        x=[n["x"] for n in nodes], y=[n["y"] for n in nodes], mode="markers", name="regions", showlegend=False,
        marker=dict(size=size, color="#eceff1", line=dict(color="#37474f", width=1)),
        text=[f"region {n['id']}<br>layer {n['layer']}<br>degree {n['degree']}<br>strength {n['strength']:g}"
              for n in nodes], hovertemplate="%{text}<extra></extra>"))
    n_layers = int(payload.get("layers") or (1 - min(n["y"] for n in nodes)))
    grid = payload.get("kind") == "grid"
    kind = "grid regions (x = cell)" if grid else "components"
    shown = f"{len(nodes)} of {payload.get('n_nodes_total', len(nodes))} nodes, {len(edges)} of " \
            f"{payload.get('n_edges_total', len(edges))} edges"
    if payload.get("min_weight"):
        shown += f" (weight ≥ {payload['min_weight']:g})"
    themed(fig, f"NRAG across layers: {' vs '.join(cats)} — {shown}")
    labels = payload.get("labels") or [str(k) for k in range(n_layers)]
    step = 1 if n_layers <= 16 else 2
    fig.update_layout(height=height, hovermode="closest", dragmode="pan", legend=dict(orientation="h", y=1.02, x=1,
                      xanchor="right", yanchor="bottom"),
                      xaxis=dict(title=kind, showgrid=False, zeroline=False, showticklabels=not grid,
                                 dtick=None if grid else 1, tick0=0),
                      yaxis=dict(title="layer", tickvals=[-k for k in range(0, n_layers, step)],
                                 ticktext=[labels[k] for k in range(0, n_layers, step)], zeroline=False))
    return fig


def layer_degree_figure(rows: list[dict[str, float]]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[r["layer"] for r in rows], y=[r["mean_degree"] for r in rows],
                           error_y=dict(type="data", array=[np.sqrt(r["var_degree"]) if r["var_degree"] == r["var_degree"]
                                                            else 0 for r in rows], visible=True),
                           marker_color="#90a4ae", customdata=[r["nodes"] for r in rows],
                           hovertemplate="layer %{x}<br>mean degree %{y:.2f}<br>%{customdata} nodes<extra></extra>"))
    themed(fig, "Mean degree per layer (± sd)")
    fig.update_layout(height=280, xaxis=dict(title="layer", dtick=1), yaxis_title="degree")
    return fig


def classifier_figure(rows: list[dict[str, Any]]) -> go.Figure:
    metrics = [r["metric"] for r in rows]
    fig = go.Figure([
        go.Bar(name="reduced layers (NRAG coords)", x=metrics, y=[r["reduced"] for r in rows], marker_color="#1f77b4"),
        go.Bar(name="full last layer", x=metrics, y=[r["full"] for r in rows], marker_color="#ff7f0e"),
    ])
    for i, r in enumerate(rows):
        fig.add_annotation(x=metrics[i], y=max(r["reduced"], r["full"]), text=f"Δ {r['delta_full_minus_reduced']:+.3f}",
                           showarrow=False, yshift=12, font=dict(size=11))
    themed(fig, "Logistic regression, stratified splits (mean score)")
    fig.update_layout(height=300, barmode="group", yaxis=dict(range=[0, 1.1], title="score"),
                      legend=dict(orientation="h", y=-0.25))
    return fig
