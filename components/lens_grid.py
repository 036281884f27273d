"""Lens figures from plain data: the layer x position grid, the difference grid, per-layer curves.

Input is the JSON-friendly dict of ``LensGrid.to_dict()`` plus top-k lists (no torch here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.figures import CATEGORY_COLOURS, themed
from components.text import show_token

# statistic -> (colour scale, reversed?, fixed range or None); "good" predictions are always dark.
STAT_STYLE: dict[str, tuple[str, tuple[float, float] | None]] = {
    "max_prob": ("Blues", (0.0, 1.0)),
    "entropy": ("Viridis_r", None),
    "kl_final": ("Viridis_r", None),
    "rank": ("Viridis_r", None),  # shown as log10(rank)
    "logprob": ("Viridis", None),
    "cross_entropy": ("Viridis_r", None),
    "js": ("Reds", None),
    "kl": ("Reds", None),
}
CELL_CHARS = 7
SCALES = {"auto": "auto (log, clipped at p98 for KL / cross-entropy)", "linear": "linear, full range",
          "robust": "linear, clipped at p98", "log": "log, full range", "robust-log": "log, clipped at p98"}
CLIP_PERCENTILE = 98.0
LOG_FLOOR = 1e-3  # log colour of a divergence: values below 0.001 nats share the lowest colour


def auto_scale(statistic: str) -> str:
    """The colour scale "auto" means for a statistic: KL and cross-entropy span 0.01-170 nats (the
    embedding row dwarfs every other layer), so log colour, clipped at the 98th percentile."""
    return "robust-log" if statistic in ("kl_final", "cross_entropy", "kl") else "linear"  # JS is bounded by ln 2


def cell_chars(n_cols: int, plot_px: int = 1120, char_px: float = 6.2) -> int:
    """How many characters of the top token fit in a cell of a grid ``n_cols`` wide (at 9 px text; the plot is
    ~1,120 px wide at 1440 px, and capitals, arrows and the ellipsis take ~6 px: measured in Chromium)."""
    return int(max(2, min(CELL_CHARS, (plot_px / max(n_cols, 1) - 2) // char_px)))


def _hover(top_tokens: Sequence[Sequence[Sequence[str]]], top_probs: np.ndarray, values: np.ndarray,
           stat_label: str, tokens: Sequence[str], next_tokens: Sequence[str], labels: Sequence[str],
           start: int) -> list[list[str]]:
    rows = []
    for r, row in enumerate(top_tokens):
        out_row = []
        for t, cell in enumerate(row):
            head = (f"<b>{labels[r]}</b> · pos {start + t} {show_token(tokens[t])!r} → next "
                    f"{show_token(next_tokens[t]) if next_tokens[t] else '—'!r}<br>{stat_label}: {_fmt(values[r][t])}<br>")
            lines = [f"{show_token(tok, 18):<18} {float(top_probs[r][t][i]):.3f}" for i, tok in enumerate(cell)]
            out_row.append(head + "<br>".join(lines))
        rows.append(out_row)
    return rows


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.4g}"


def _x_labels(tokens: Sequence[str], start: int) -> list[str]:
    return [f"{show_token(tok, 10)}<span style='font-size:0'>{start + i}</span>" for i, tok in enumerate(tokens)]


def colour_values(values: np.ndarray, key: str, scale: str = "auto",
                  limits: tuple[float, float] | None = None) -> tuple[np.ndarray, float, float, dict]:
    """(z, zmin, zmax, colour-bar extras) for ``values`` under a colour ``scale``.

    Probabilities keep 0..1; ranks are log10 as always. ``log``: z = log10(max(v, 0.001)) with the colour
    bar ticked in the statistic's own units at decades; ``robust``: the top end clipped at the 98th
    percentile, the clip stated on the colour bar. ``limits`` (raw values) shares one range across panels.
    """
    scale = auto_scale(key) if scale == "auto" else scale
    if scale not in SCALES:
        raise ValueError(f"Unknown colour scale '{scale}': use one of {', '.join(SCALES)}.")
    _palette, fixed = STAT_STYLE.get(key, ("Viridis", None))
    if fixed:
        return values, fixed[0], fixed[1], {}
    if key == "rank":
        z = np.log10(values)
        finite = z[np.isfinite(z)]
        return z, float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 1.0, {}
    raw = values[np.isfinite(values)] if limits is None else np.asarray(limits, dtype=float)
    if raw.size == 0:
        return values, 0.0, 1.0, {}
    lo, hi = float(raw.min()), float(raw.max())
    extras: dict = {}
    if scale.startswith("robust") and raw.size > 1:
        clip = float(np.percentile(raw, CLIP_PERCENTILE)) if limits is None else hi
        mine = values[np.isfinite(values)]
        if mine.size and clip < float(mine.max()):
            hi = clip
            extras["clipped"] = clip
    if scale.endswith("log") and lo >= 0:
        z = np.log10(np.maximum(values, LOG_FLOOR))
        zlo, zhi = np.log10(max(lo, LOG_FLOOR)), np.log10(max(hi, LOG_FLOOR * 10))
        decades = range(int(np.floor(zlo)), int(np.ceil(zhi)) + 1)
        extras["tickvals"] = [float(d) for d in decades]
        extras["ticktext"] = [f"{10.0 ** d:g}" for d in decades]
        return z, float(zlo), float(zhi), extras
    return values, lo, hi, extras


def grid_heatmap(data: dict, stat_label: str, top_probs: np.ndarray | None = None,
                 top_k_tokens: list | None = None, showscale: bool = True, colorbar_x: float | None = None,
                 values_override: np.ndarray | None = None, style_key: str | None = None, scale: str = "auto",
                 limits: tuple[float, float] | None = None, chars: int = CELL_CHARS) -> go.Heatmap:
    """One heatmap trace: colour = the statistic, text = top-1 token, hover = top-k with probabilities."""
    values = np.array([[np.nan if v is None else v for v in row] for row in
                       (values_override if values_override is not None else data["values"])], dtype=float)
    key = style_key or data["statistic"]
    palette, _fixed = STAT_STYLE.get(key, ("Viridis", None))
    z, zmin, zmax, extras = colour_values(values, key, scale, limits)
    text = [[show_token(tok, chars) for tok in row] for row in data["top_tokens"]]
    hover = None
    if top_probs is not None and top_k_tokens is not None:
        hover = _hover(top_k_tokens, top_probs, values, stat_label, data["tokens"], data["next_tokens"],
                       data["layer_labels"], data["start"])
    title = "log10 rank" if key == "rank" else stat_label
    if "clipped" in extras:
        title += f" (≥ {extras['clipped']:.3g} clipped: p98)"
    colorbar = dict(title=dict(text=title, side="right"), thickness=12)
    if "tickvals" in extras:
        colorbar.update(tickvals=extras["tickvals"], ticktext=extras["ticktext"])
    if colorbar_x is not None:
        colorbar["x"] = colorbar_x
    return go.Heatmap(
        z=z, x=list(range(len(data["tokens"]))), y=list(range(len(data["layer_labels"]))),
        text=text, texttemplate="%{text}", textfont=dict(size=9),
        hovertext=hover, hoverinfo="text" if hover else "z",
        hovertemplate=None if hover else "%{z:.3f}<extra></extra>",
        colorscale=palette, zmin=zmin, zmax=zmax, showscale=showscale, colorbar=colorbar, xgap=1, ygap=1,
    )


def _top_axis(fig: go.Figure, data: dict, anchor: str = "y") -> None:
    """The input tokens along the top as well (a tall grid's bottom axis is far from its top rows)."""
    n = len(data["tokens"])
    fig.add_trace(go.Scatter(x=list(range(n)), y=[None] * n, xaxis="x2", yaxis=anchor, showlegend=False,
                             hoverinfo="skip", mode="markers", marker=dict(opacity=0)))
    fig.update_layout(xaxis2=dict(overlaying="x", side="top", matches="x", tickvals=list(range(n)),
                                  ticktext=[show_token(t, 10) for t in data["tokens"]], tickangle=-60,
                                  tickfont=dict(size=10, family="ui-monospace, Menlo, monospace"), showgrid=False))


def _axes(fig: go.Figure, data: dict, row: int | None = None, col: int | None = None) -> None:
    kw = {"row": row, "col": col} if row else {}
    n_rows = len(data["layer_labels"])
    step = 1 if n_rows <= 16 else 2
    ticks = list(range(0, n_rows - 1, step)) + [n_rows - 1]
    fig.update_yaxes(tickvals=ticks, ticktext=[data["layer_labels"][i] for i in ticks], title_text="layer",
                     tickfont=dict(size=10), **kw)
    fig.update_xaxes(tickvals=list(range(len(data["tokens"]))), ticktext=[show_token(t, 10) for t in data["tokens"]],
                     tickangle=-60, tickfont=dict(size=10, family="ui-monospace, Menlo, monospace"), **kw)


def grid_height(n_rows: int, panels: int = 1) -> int:
    return int(140 + panels * (18 * n_rows + 40))


def grid_figure(data: dict, stat_label: str, title: str, top_probs: np.ndarray | None = None,
                top_k_tokens: list | None = None, scale: str = "auto") -> go.Figure:
    """The layer x position grid of one lens."""
    chars = cell_chars(len(data["tokens"]))
    fig = go.Figure(grid_heatmap(data, stat_label, top_probs, top_k_tokens, scale=scale, chars=chars))
    _axes(fig, data)
    _top_axis(fig, data)
    themed(fig, title)
    fig.update_layout(height=grid_height(len(data["layer_labels"])) + 60, margin=dict(l=70, r=20, t=110, b=110),
                      width=None)
    return fig


def pair_figure(panels: list[tuple[dict, str, np.ndarray | None, list | None]], stat_label: str,
                title: str, side_by_side: bool = False, scale: str = "auto") -> go.Figure:
    """Several lens grids of one window with one shared colour range: stacked (logit above tuned,
    full width per grid: best for wide windows) or side by side (shared layer axis: best for short ones)."""
    n = len(panels)
    rows, cols = (1, n) if side_by_side else (n, 1)
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=not side_by_side, shared_yaxes=side_by_side,
                        vertical_spacing=0.06, horizontal_spacing=0.03, subplot_titles=[sub for _, sub, _, _ in panels])
    all_vals = np.concatenate([np.array([[np.nan if v is None else v for v in r] for r in d["values"]], float).ravel()
                               for d, _, _, _ in panels])
    fin = all_vals[np.isfinite(all_vals)]
    limits = None
    if fin.size:  # one colour range for both panels (the clip percentile over both)
        key0 = panels[0][0]["statistic"]
        use = auto_scale(key0) if scale == "auto" else scale
        hi = float(np.percentile(fin, CLIP_PERCENTILE)) if use.startswith("robust") else float(fin.max())
        limits = (float(fin.min()), hi)
    width = len(panels[0][0]["tokens"]) * (len(panels) if side_by_side else 1)
    for i, (data, _, probs, topk) in enumerate(panels, start=1):
        trace = grid_heatmap(data, stat_label, probs, topk, showscale=i == 1, scale=scale,
                             limits=None if data["statistic"] in ("rank", "max_prob") else limits,
                             chars=cell_chars(width))
        row, col = (1, i) if side_by_side else (i, 1)
        fig.add_trace(trace, row=row, col=col)
        _axes(fig, data, row=row, col=col)
    if side_by_side:
        fig.update_yaxes(title_text="", row=1, col=2)
    themed(fig, title)
    fig.update_layout(height=grid_height(len(panels[0][0]["layer_labels"]), 1 if side_by_side else n),
                      margin=dict(l=70, r=20, t=60, b=110))
    return fig


def difference_figure(data: dict, div: np.ndarray, div_label: str, title: str, scale: str = "auto",
                      top_label: str = "tuned top") -> go.Figure:
    """Per-cell divergence between two grids (the two lenses, or clean vs edited); text = ``data``'s top token."""
    trace = grid_heatmap(data, div_label, values_override=div, style_key="js", scale=scale,
                         chars=cell_chars(len(data["tokens"])))
    vals = np.asarray(div, dtype=float)
    hover = [[f"<b>{data['layer_labels'][r]}</b> · pos {data['start'] + t} {show_token(data['tokens'][t])!r}<br>"
              f"{div_label}: {vals[r, t]:.4f}<br>{top_label}: {show_token(data['top_tokens'][r][t])!r}"
              for t in range(vals.shape[1])] for r in range(vals.shape[0])]
    trace.update(hovertext=hover, hoverinfo="text", hovertemplate=None)
    fig = go.Figure(trace)
    _axes(fig, data)
    _top_axis(fig, data)
    themed(fig, title)
    fig.update_layout(height=grid_height(len(data["layer_labels"])) + 60, margin=dict(l=70, r=20, t=110, b=110))
    return fig


def summary_figure(curves: dict[str, dict[str, list[float]]], labels: Sequence[str], title: str) -> go.Figure:
    """Mean KL to final and mean cross-entropy by layer, one line per lens."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["mean KL to final (nats)", "mean cross-entropy (nats)"])
    for i, (lens, curve) in enumerate(curves.items()):
        colour = CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]
        for col, key in ((1, "kl_final"), (2, "cross_entropy")):
            ys = [None if (v is None or not math.isfinite(v)) else v for v in curve[key]]
            fig.add_trace(go.Scatter(x=list(labels), y=ys, mode="lines+markers", name=f"{lens} lens",
                                     line=dict(color=colour), marker=dict(size=5), showlegend=col == 1,
                                     legendgroup=lens), row=1, col=col)
    themed(fig, title)
    fig.update_xaxes(tickangle=-60, tickfont=dict(size=9))
    fig.update_yaxes(type="log", dtick=1)  # the embedding row is 10-100x the rest; ticks at decades only
    fig.update_layout(height=330, legend=dict(orientation="h", y=1.18, x=1, xanchor="right"),
                      margin=dict(l=60, r=20, t=80, b=70))
    return fig


def highlight_column(fig: go.Figure, column: int, n_rows: int) -> None:
    """Outline the focus token's column (opened from another page)."""
    fig.add_shape(type="rect", x0=column - 0.5, x1=column + 0.5, y0=-0.5, y1=n_rows - 0.5, xref="x", yref="y",
                  line=dict(color="#0d47a1", width=2.5), fillcolor="rgba(0,0,0,0)", name="focus")
