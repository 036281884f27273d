"""Features page figures: logit effects, activation histogram, feature density, definition tree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from components.figures import CATEGORY_COLOURS, SELECTED_COLOUR, empty_figure, themed
from components.text import token_label as visible

POS = "#d62728"
NEG = "#1f77b4"


def logit_figure(positive: Sequence[tuple[str, float]], negative: Sequence[tuple[str, float]], feature: int) -> go.Figure:
    """Top positive and negative tokens of W_dec[f] · W_U as horizontal bars."""
    rows = list(reversed(list(negative))) + list(reversed(list(positive)))
    if not rows:
        return empty_figure("No logit effects")
    labels = [f"{visible(t)}  " for t, _ in rows]
    # plotly merges equal category labels: make each bar's label unique with zero-width suffixes
    labels = [lab + "\u200b" * i for i, lab in enumerate(labels)]
    values = [v for _, v in rows]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h",
                           marker_color=[POS if v >= 0 else NEG for v in values],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    themed(fig, f"Logit effects of feature {feature} (W_dec · W_U)")
    fig.update_layout(height=max(260, 18 * len(rows) + 80), margin=dict(l=120, r=20, t=40, b=40),
                      xaxis_title="direct effect on logit", yaxis=dict(automargin=True))
    return fig


def histogram_figure(counts: Sequence[int], edges: Sequence[float], feature: int, n_tokens: int) -> go.Figure:
    """Histogram of the feature's nonzero activations over the scanned corpus."""
    if not counts:
        return empty_figure(f"Feature {feature} never fired on the scanned corpus")
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    fig = go.Figure(go.Bar(x=centers, y=counts, width=width, marker_color=CATEGORY_COLOURS[3],
                           hovertemplate="act %{x:.3f}: %{y} tokens<extra></extra>"))
    themed(fig, f"Activation histogram (nonzero, {sum(counts):,} of {n_tokens:,} tokens)")
    fig.update_layout(height=260, xaxis_title="activation", yaxis_title="tokens", bargap=0.05)
    return fig


def density_figure(log_densities: Sequence[float], selected: float | None, feature: int) -> go.Figure:
    """log10 density of every feature, with this feature marked."""
    finite = [d for d in log_densities if math.isfinite(d)]
    if not finite:
        return empty_figure("No density yet")
    fig = go.Figure(go.Histogram(x=finite, nbinsx=50, marker_color="#adb5bd",
                                 hovertemplate="log10 density %{x}: %{y} features<extra></extra>"))
    if selected is not None and math.isfinite(selected):
        fig.add_vline(x=selected, line_color=SELECTED_COLOUR, line_width=3,
                      annotation_text=f"feature {feature}", annotation_position="top")
    dead = len(log_densities) - len(finite)
    themed(fig, f"Feature density, all features (log10; {dead} never fired)")
    fig.update_layout(height=260, xaxis_title="log10 fraction of tokens", yaxis_title="features")
    return fig


def tree_figure(layout: dict[str, Any], title: str = "") -> go.Figure:
    """Left-to-right definition tree: x = depth, edge width by log probability, hover shows p."""
    nodes = {n["id"]: n for n in layout["nodes"]}
    if len(nodes) <= 1:
        return empty_figure("The tree is empty at this trim level")
    fig = go.Figure()
    # one trace per width bucket (plotly lines have one width per trace)
    buckets: dict[int, tuple[list, list]] = {}
    for n in nodes.values():
        if n["parent"] is None or n["parent"] not in nodes:
            continue
        p = nodes[n["parent"]]
        logp = math.log10(max(n["cum_prob"], 1e-12))
        width = max(1, min(8, round(8 + 1.4 * logp)))  # p=1 -> 8 px, p=1e-5 -> 1 px
        xs, ys = buckets.setdefault(width, ([], []))
        xs += [p["x"], (p["x"] + n["x"]) / 2, n["x"], None]
        ys += [p["y"], n["y"], n["y"], None]
    for width, (xs, ys) in sorted(buckets.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(width=width, color="rgba(31,119,180,0.55)",
                                 shape="hv"), hoverinfo="skip", showlegend=False))
    shown = [n for n in nodes.values() if n["parent"] is not None]
    fig.add_trace(go.Scatter(
        x=[n["x"] for n in shown], y=[n["y"] for n in shown], mode="text",
        text=[visible(n["token"]) for n in shown], textposition="middle right",
        textfont=dict(size=12, family="ui-monospace, Menlo, monospace"),
        customdata=[[n["prob"], n["cum_prob"]] for n in shown],
        hovertemplate="%{text}<br>p(token | path) = %{customdata[0]:.3g}<br>p(path) = %{customdata[1]:.3g}<extra></extra>",
        showlegend=False,
    ))
    root = nodes[0]
    fig.add_trace(go.Scatter(x=[0], y=[root["y"]], mode="markers+text", text=["ghost"], textposition="middle left",
                             marker=dict(size=12, color=POS), hovertext=[layout["prompt"]], hoverinfo="text",
                             showlegend=False))
    themed(fig, title or f"Definition tree of feature {layout['feature']}")
    depth = max(n["x"] for n in nodes.values())
    fig.update_layout(
        height=max(360, 22 * layout["leaves"] + 80),
        xaxis=dict(visible=False, range=[-0.6, depth + 1.5]),
        yaxis=dict(visible=False, autorange="reversed"),
        margin=dict(l=20, r=20, t=40, b=20),
    )
    return fig
