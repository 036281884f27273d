"""Circuits page figures from plain data: the head heatmap, per-layer bars, the source strip, the contribution
graph over the token strip, and the patching grid. No torch here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from components.figures import DIVERGING, empty_figure, themed
from components.text import show_token

ATTN_COLOUR = "#1f77b4"
MLP_COLOUR = "#d62728"
RESID_COLOUR = "#9a9a9a"


def _symmetric(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def head_heatmap(heads: Sequence[Sequence[float]], title: str) -> go.Figure:
    """Layers (rows, bottom = 0) x heads: each head's share of the logit, diverging at zero; click = a head."""
    values = np.asarray(heads, dtype=float)
    n_layers, n_heads = values.shape
    bound = _symmetric(values)
    fig = go.Figure(go.Heatmap(
        z=values, x=list(range(n_heads)), y=list(range(n_layers)), colorscale=DIVERGING, zmin=-bound, zmax=bound,
        colorbar=dict(title="logit share", thickness=12),
        hovertemplate="layer %{y} · head %{x}<br>share %{z:.4f}<extra>click: its attention in Tokens</extra>"))
    fig.update_xaxes(title_text="head", dtick=1)
    fig.update_yaxes(title_text="layer", dtick=max(1, n_layers // 15))
    return themed(fig, title).update_layout(height=max(360, 14 * n_layers + 120), margin=dict(l=60, r=20, t=60, b=50))


def layer_bars(attention: Sequence[float], mlp: Sequence[float], embed: float, title: str) -> go.Figure:
    """Per-layer shares: attention (heads + output bias) and MLP, the embedding as its own bar."""
    layers = [f"L{i}" for i in range(len(attention))]
    fig = go.Figure([
        go.Bar(x=["embed"], y=[embed], name="embedding", marker_color=RESID_COLOUR,
               hovertemplate="embedding %{y:.4f}<extra></extra>"),
        go.Bar(x=layers, y=list(attention), name="attention", marker_color=ATTN_COLOUR,
               hovertemplate="%{x} attention %{y:.4f}<extra></extra>"),
        go.Bar(x=layers, y=list(mlp), name="MLP", marker_color=MLP_COLOUR, hovertemplate="%{x} MLP %{y:.4f}<extra></extra>"),
    ])
    fig.update_layout(barmode="group", height=330, legend=dict(orientation="h", y=1.12, x=0),
                      margin=dict(l=60, r=20, t=70, b=60))
    fig.update_yaxes(title_text="logit share", zeroline=True)
    fig.update_xaxes(tickangle=-60, automargin=True)  # 'embed' and every layer label whole, not clipped
    return themed(fig, title)


def source_strip(tokens: Sequence[str], values: Sequence[float], position: int, title: str) -> go.Figure:
    """The prompt's tokens coloured by what each contributed (through every head) to the logit at ``position``."""
    vals = np.asarray(values, dtype=float)
    bound = _symmetric(vals)
    labels = [show_token(t) for t in tokens]
    fig = go.Figure(go.Bar(
        x=list(range(len(tokens))), y=vals, marker=dict(color=vals, colorscale=DIVERGING, cmin=-bound, cmax=bound),
        customdata=labels, hovertemplate="%{x}: %{customdata}<br>share %{y:.4f}<extra></extra>"))
    fig.add_vline(x=position, line_dash="dot", line_color="#444")
    step = max(1, len(tokens) // 48)
    fig.update_xaxes(tickmode="array", tickvals=list(range(0, len(tokens), step)), ticktext=labels[::step],
                     tickangle=-60, title_text="source token")
    fig.update_yaxes(title_text="share via attention")
    return themed(fig, title).update_layout(height=300, margin=dict(l=60, r=20, t=60, b=90))


def _node_xy(name: str) -> tuple[float, float]:
    """Node name -> (token position, row): X0 at row 0; layer l has A at 2l+1, M at 2l+1.5, I at 2l+2."""
    kind, rest = name[0], name[1:]
    layer, token = (int(x) for x in rest.split("_"))
    if kind == "X":
        return token, 0.0
    return {"A": (token, 2 * layer + 1.0), "M": (token + 0.35, 2 * layer + 1.5), "I": (token, 2 * layer + 2.0)}[kind]


def graph_figure(graph: dict[str, Any], title: str) -> go.Figure:
    """The pruned contribution graph drawn over the token strip (x = position, y = depth, bottom = embedding);
    edge width = weight. Edge midpoints and MLP nodes are clickable (customdata carries what they are)."""
    edges = graph["edges"]
    tokens = graph["tokens"]
    if not edges:
        return empty_figure(f"No edge above the threshold {graph['threshold']:g}: lower it.")
    traces: list[go.BaseTraceType] = []
    colours = {"attn": ATTN_COLOUR, "mlp": MLP_COLOUR, "resid": RESID_COLOUR}
    mids: dict[str, list] = {"x": [], "y": [], "data": [], "text": []}
    top = max(e["weight"] for e in edges)
    for edge in edges:
        x0, y0 = _node_xy(edge["source"])
        x1, y1 = _node_xy(edge["target"])
        width = 0.6 + 5.0 * edge["weight"] / top
        traces.append(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(color=colours[edge["kind"]], width=width), opacity=0.75))
        if edge["kind"] == "attn":
            mids["x"].append((x0 + x1) / 2)
            mids["y"].append((y0 + y1) / 2)
            mids["data"].append({"kind": "edge", "layer": edge["layer"], "source": int(edge["source"].split("_")[1]),
                                 "target": int(edge["target"].split("_")[1])})
            mids["text"].append(f"L{edge['layer']} attention {edge['source']} → {edge['target']}: {edge['weight']:.3f}")
    traces.append(go.Scatter(x=mids["x"], y=mids["y"], mode="markers", customdata=mids["data"], text=mids["text"],
                             marker=dict(size=9, color=ATTN_COLOUR, opacity=0.25), name="attention edge (click)",
                             hovertemplate="%{text}<extra>click: the heads</extra>"))
    nodes = graph["nodes"]
    for kind, colour, label, size in (("A", ATTN_COLOUR, "after attention", 6), ("I", "#333", "block output", 6),
                                      ("X", RESID_COLOUR, "embedding", 8), ("M", MLP_COLOUR, "MLP (click)", 10)):
        chosen = [n for n in nodes if n.startswith(kind)]
        if not chosen:
            continue
        xy = [_node_xy(n) for n in chosen]
        data = [{"kind": "mlp", "layer": int(n[1:].split("_")[0]), "token": int(n.split("_")[1])} if kind == "M"
                else {"kind": "node", "name": n} for n in chosen]
        traces.append(go.Scatter(
            x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers", name=label, customdata=data, text=chosen,
            marker=dict(size=size, color=colour, symbol="square" if kind == "M" else "circle"),
            hovertemplate="%{text}<extra>" + ("click: its top neurons" if kind == "M" else "") + "</extra>"))
    fig = go.Figure(traces)
    n_layers = graph["n_layers"]
    labels = [show_token(t) for t in tokens]
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))), ticktext=labels, tickangle=-60,
                     range=[-0.7, len(tokens) - 0.3], showgrid=False)
    fig.update_yaxes(tickmode="array", tickvals=[0] + [2 * i + 2 for i in range(0, n_layers, max(1, n_layers // 10))],
                     ticktext=["embed"] + [f"L{i}" for i in range(0, n_layers, max(1, n_layers // 10))],
                     title_text="layer", showgrid=False)
    height = max(480, 14 * n_layers + 200)
    return themed(fig, title).update_layout(height=height, legend=dict(orientation="h", y=1.06, x=0),
                                            margin=dict(l=60, r=20, t=80, b=100), hovermode="closest")


def bars_figure(labels: Sequence[str], values: Sequence[float], title: str, axis: str) -> go.Figure:
    """A small horizontal bar list (heads of an edge, neurons of an MLP node), largest first."""
    vals = list(values)
    bound = _symmetric(np.asarray(vals, dtype=float))
    fig = go.Figure(go.Bar(y=list(labels)[::-1], x=vals[::-1], orientation="h",
                           marker=dict(color=vals[::-1], colorscale=DIVERGING, cmin=-bound, cmax=bound)))
    fig.update_xaxes(title_text=axis)
    return themed(fig, title).update_layout(height=max(220, 22 * len(vals) + 90), margin=dict(l=90, r=20, t=50, b=40))


def patching_figure(values: Sequence[Sequence[float]], positions: Sequence[int], tokens: Sequence[str], title: str,
                    colour_title: str, zmid: float | None = None) -> go.Figure:
    """Layers (rows) x patched positions: the metric with the clean activation restored there."""
    z = np.asarray(values, dtype=float)
    labels = [f"{p}: {show_token(tokens[p])}" for p in positions]
    heat = go.Heatmap(z=z, x=labels, y=list(range(z.shape[0])), colorscale="Purples" if zmid is None else DIVERGING,
                      colorbar=dict(title=colour_title, thickness=12),
                      hovertemplate="layer %{y} · %{x}<br>%{z:.4f}<extra></extra>")
    if zmid is not None:
        bound = max(abs(np.nanmin(z) - zmid), abs(np.nanmax(z) - zmid), 1e-9)
        heat.update(zmin=zmid - bound, zmax=zmid + bound)
    fig = go.Figure(heat)
    fig.update_xaxes(tickangle=-60, title_text="patched position")
    fig.update_yaxes(title_text="layer", dtick=max(1, z.shape[0] // 15))
    return themed(fig, title).update_layout(height=max(380, 14 * z.shape[0] + 150),
                                            margin=dict(l=60, r=20, t=60, b=110))
