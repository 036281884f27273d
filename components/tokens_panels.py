"""Panels and figures of the Tokens page: predictions, histograms, scatter/density, token header.

Plain data in (dicts/lists from the callbacks), Dash components and plotly figures out.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
import numpy as np
import plotly.io as pio
from dash import html

from components.figures import MEDIAN_COLOUR, SELECTED_COLOUR, empty_figure
from components.text import show_token, token_label

OUTLIER_COLOUR = "#d62728"
_TEMPLATE = pio.templates["glassbox"].to_plotly_json()


def token_header(sample_title: str, pos: int, token: str, n_tokens: int) -> html.Div:
    return html.Div(
        [html.Span("Selected token ", className="text-muted small"),
         html.Code(token_label(token), className="gb-tok-big"),
         html.Span(f" #{pos} of {n_tokens} · {sample_title}", className="text-muted small")],
        className="mb-2",
    )


def prediction_panel(panel: dict[str, Any] | None, message: str | None = None, title: str = "Top-5 next-token predictions",
                     panel_id: str = "tokens-predictions") -> html.Div:
    """Top-5 next-token predictions as probability bars; the true next token is marked ✓."""
    if panel is None:
        return html.Div(message or "No predictions for this model.", className="text-muted small")
    rows = []
    for p in panel["top"]:
        mark = "✓ " if p["is_true"] else ""
        rows.append(html.Tr([
            html.Td(html.Code(mark + show_token(p["token"])), className="gb-pred-tok" + (" gb-true" if p["is_true"] else ""),
                    title=repr(p["token"])),
            html.Td(dbc.Progress(value=100 * p["prob"], color="success" if p["is_true"] else "primary",
                                 className="gb-pred-bar"), style={"width": "60%"}),
            html.Td(f"{p['prob']:.3f}", className="small text-end font-monospace"),
        ]))
    if panel["true_token"] is None:
        foot = html.Div("Last token: there is no true next token.", className="small text-muted")
    else:
        in_top = any(p["is_true"] for p in panel["top"])
        foot = html.Div(
            [html.Span("True next token "), html.Code(show_token(panel["true_token"])),
             html.Span(f": p = {panel['true_prob']:.4f}, rank {panel['true_rank']}"
                       f"{'' if in_top else ' (not in the top 5)'}, loss {panel['loss']:.3f} nats")],
            className="small",
        )
    return html.Div([html.Div(title, className="small fw-semibold mb-1"),
                     html.Table(html.Tbody(rows), className="table table-sm mb-1 gb-pred"), foot],
                    id=panel_id)


def edited_predictions(clean: dict[str, Any], edited: dict[str, Any], kl: float, edits: str) -> html.Div:
    """Clean | edited top-5 side by side, and what the edit list changes at this token."""
    line = [html.Span(f"KL(clean ‖ edited) here {kl:.4f} nats")]
    if clean["loss"] is not None and edited["loss"] is not None:
        delta = edited["loss"] - clean["loss"]
        line.append(html.Span(f" · loss of the true next token {clean['loss']:.3f} → {edited['loss']:.3f} "
                              f"({delta:+.3f} nats)"))
    return html.Div([
        html.Div([html.Div(prediction_panel(clean, title="Clean", panel_id="tokens-predictions"), className="col-6"),
                  html.Div(prediction_panel(edited, title="Edited", panel_id="tokens-predictions-edited"),
                           className="col-6")], className="row g-2"),
        html.Div(line, className="small mt-1", id="tokens-edit-effect"),
        html.Div(f"Edits: {edits}", className="small text-muted"),
    ])


def typed(arr: np.ndarray) -> dict[str, str]:
    """A numpy array as plotly.js's base64 typed-array spec (compact JSON, no per-number text)."""
    arr = np.ascontiguousarray(arr)
    spec = {"dtype": arr.dtype.str.lstrip("<|="), "bdata": base64.b64encode(arr.tobytes()).decode()}
    if arr.ndim > 1:
        spec["shape"] = ", ".join(str(n) for n in arr.shape)
    return spec


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    """The screen theme as a plain layout dict (building go.Figure objects costs ~100 ms per figure;
    these figures are rebuilt on every token/layer change, so they are dicts)."""
    layout = {"template": _TEMPLATE, "height": height, "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
              "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
              "legend": {"orientation": "h", "y": -0.25}}
    layout.update(extra)
    return layout


def _vline(x: float, dash: str, label: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    shape = {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
             "line": {"color": "black", "dash": dash}}
    notes = [{"x": x, "y": 1, "xref": "x", "yref": "paper", "text": label, "showarrow": False,
              "yanchor": "bottom"}] if label else []
    return shape, notes


def histogram_figure(hist: dict[str, Any], title: str) -> dict[str, Any]:
    """Median token's histogram (orange base), selected token's on top (blue), outliers, dimension line."""
    edges = np.asarray(hist["edges"], dtype=np.float64)
    centres = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)
    width = float(edges[1] - edges[0])
    data: list[dict[str, Any]] = [
        {"type": "bar", "x": typed(centres), "y": typed(np.asarray(hist["median_counts"], dtype=np.int16)),
         "width": width, "marker": {"color": MEDIAN_COLOUR}, "opacity": 0.75,
         "name": f"median token #{hist['median_index']}"},
        {"type": "bar", "x": typed(centres), "y": typed(np.asarray(hist["selected_counts"], dtype=np.int16)),
         "width": width, "marker": {"color": SELECTED_COLOUR}, "opacity": 0.6,
         "name": f"selected token #{hist['selected_index']}"},
    ]
    if hist["outlier_dims"]:
        data.append({"type": "scatter", "x": hist["outlier_values"], "y": [0] * len(hist["outlier_dims"]),
                     "mode": "markers", "name": "outliers (IQR×3 per sign)", "customdata": hist["outlier_dims"],
                     "marker": {"symbol": "line-ns-open", "size": 14, "color": OUTLIER_COLOUR, "line": {"width": 2}},
                     "hovertemplate": "dim %{customdata}: %{x:.4g}<extra></extra>"})
    shapes, notes = [], []
    if hist["dim"] is not None:
        shape, notes = _vline(hist["dim_value"], "dash", f"dim {hist['dim']}")
        shapes.append(shape)
    layout = _layout(title, 300, barmode="overlay", bargap=0, shapes=shapes, annotations=notes,
                     xaxis={"title": {"text": "activation value"}}, yaxis={"title": {"text": "dimensions"}})
    return {"data": data, "layout": layout}


def outlier_list(dims: Sequence[int], values: Sequence[float], limit: int = 12) -> html.Div:
    if not dims:
        return html.Div("No outliers (IQR × 3, negatives and positives separately).", className="small text-muted")
    items = ", ".join(f"{d} ({v:.3g})" for d, v in list(zip(dims, values, strict=True))[:limit])
    more = f" … +{len(dims) - limit}" if len(dims) > limit else ""
    return html.Div([html.Span(f"{len(dims)} outlier dimensions: ", className="fw-semibold"), items + more],
                    className="small", id="tokens-outliers")


def density_figure(dens: dict[str, Any], dim: int | None, title: str) -> dict[str, Any]:
    """All tokens as a density over (dimension, value); selected and median tokens and outliers on top."""
    counts = np.asarray(dens["counts"])
    if counts.size == 0:
        return empty_figure("No activations.").to_plotly_json()
    edges = np.asarray(dens["value_edges"], dtype=np.float64)
    centres = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)
    d = counts.shape[1]
    xs = typed(np.arange(d, dtype=np.int16))
    # log(1+count) quantized to uint8 levels: 1 byte per cell keeps the figure small.
    logc = np.log1p(counts)
    levels = np.round(logc * (255 / max(float(logc.max()), 1e-9))).astype(np.uint8)
    sel = np.asarray(dens["selected_values"], dtype=np.float32)
    data: list[dict[str, Any]] = [
        {"type": "heatmap", "z": typed(levels), "x": xs, "y": typed(centres), "showscale": False, "name": "all tokens",
         "colorscale": [[0, "rgba(255,255,255,0)"], [0.01, "#eceff1"], [1, "#37474f"]],
         "hovertemplate": "dim %{x}, value ≈ %{y:.3g}<extra>all tokens</extra>"},
        {"type": "scattergl", "x": xs, "y": typed(np.asarray(dens["median_values"], dtype=np.float32)),
         "mode": "markers", "marker": {"size": 3, "color": MEDIAN_COLOUR}, "name": "median token"},
        {"type": "scattergl", "x": xs, "y": typed(sel), "mode": "markers",
         "marker": {"size": 4, "color": SELECTED_COLOUR}, "name": "selected token"},
    ]
    hi = dens["highlighted"]
    if hi:
        data.append({"type": "scatter", "x": hi, "y": sel[hi].tolist(), "mode": "markers", "name": "outlier dims",
                     "marker": {"size": 10, "color": "rgba(0,0,0,0)", "line": {"color": OUTLIER_COLOUR, "width": 2}}})
    chosen = dens.get("chosen") or []
    if chosen:
        data.append({"type": "scatter", "x": chosen, "y": sel[chosen].tolist(), "mode": "markers+text",
                     "name": "highlighted dims", "text": [str(c) for c in chosen], "textposition": "top center",
                     "marker": {"size": 11, "symbol": "diamond-open", "color": "#2ca02c", "line": {"width": 2}}})
    shapes = [_vline(dim, "dot")[0]] if dim is not None and 0 <= dim < d else []
    pad = 0.08 * (edges[-1] - edges[0])
    layout = _layout(title, 340, shapes=shapes, xaxis={"title": {"text": "dimension"}},
                     yaxis={"title": {"text": "value"}, "range": [float(edges[0] - pad), float(edges[-1] + pad)]})
    return {"data": data, "layout": layout}


def attention_heatmap(grid: Any, tokens: Sequence[str], pos: int) -> html.Div:
    """The chosen head's (or the mean's) query x key window, and every head of the layer as small multiples
    (circuitsvis's pattern views); rows are queries, columns keys, the selected token outlined."""
    from dash import dcc

    g = grid if isinstance(grid, dict) else vars(grid)
    fs = g["focus_start"]
    n = len(g["focus"])
    labels = [f"{show_token(tokens[fs + i], 12)} ·{fs + i}" for i in range(n)]
    weights = g["mode"] == "full"
    colours = "Blues" if weights else "RdBu_r"
    what = "weights" if weights else "scores"
    head = "mean of heads" if g["head"] is None else f"head {g['head']}"
    focus = {
        "data": [{"type": "heatmap", "z": g["focus"], "x": labels, "y": labels, "colorscale": colours,
                  "zmin": 0 if weights else None, "zmid": None if weights else 0,
                  "hovertemplate": "query %{y}<br>key %{x}<br>" + what + " %{z:.4f}<extra></extra>",
                  "colorbar": {"title": {"text": what}, "thickness": 12}}],
        "layout": _layout(f"Attention {what} · L{g['layer']} {head} · positions {fs}–{fs + n - 1}", 520,
                          xaxis={"title": {"text": "key (attended to)"}, "tickangle": -60, "tickfont": {"size": 9},
                                 "type": "category"},
                          yaxis={"title": {"text": "query"}, "autorange": "reversed", "tickfont": {"size": 9},
                                 "type": "category"},
                          shapes=[_cell_box(pos - fs, n)] if 0 <= pos - fs < n else []),
    }
    gs, heads = g["grid_start"], g["heads"]
    cols = min(len(heads), 5)
    rows = -(-len(heads) // cols)
    data, layout = [], _layout(f"Every head of L{g['layer']} · positions {gs}–{gs + len(g['grid'][0]) - 1}",
                               170 * rows + 60, showlegend=False)
    for k, h in enumerate(heads):
        ax = "" if k == 0 else str(k + 1)
        r, c = divmod(k, cols)
        dom_x = [c / cols + 0.01, (c + 1) / cols - 0.01]
        dom_y = [1 - (r + 1) / rows + 0.03, 1 - r / rows - 0.03]
        data.append({"type": "heatmap", "z": g["grid"][k], "xaxis": f"x{ax}", "yaxis": f"y{ax}", "showscale": False,
                     "colorscale": colours, "zmin": 0 if weights else None, "zmid": None if weights else 0,
                     "hovertemplate": f"head {h}<br>query %{{y}}<br>key %{{x}}<br>%{{z:.3f}}<extra></extra>"})
        layout[f"xaxis{ax}"] = {"domain": dom_x, "showticklabels": False, "anchor": f"y{ax}"}
        layout[f"yaxis{ax}"] = {"domain": dom_y, "showticklabels": False, "autorange": "reversed", "anchor": f"x{ax}"}
        layout.setdefault("annotations", []).append(
            {"text": f"head {h}", "xref": "paper", "yref": "paper", "x": dom_x[0], "y": dom_y[1], "showarrow": False,
             "xanchor": "left", "yanchor": "bottom", "font": {"size": 11}})
    return html.Div([
        dcc.Graph(figure=focus, id="tokens-attention-focus", config={"displaylogo": False}),
        dcc.Graph(figure={"data": data, "layout": layout}, id="tokens-attention-heads", config={"displaylogo": False}),
    ])


def _cell_box(i: int, n: int) -> dict[str, Any]:
    return {"type": "rect", "x0": -0.5, "x1": n - 0.5, "y0": i - 0.5, "y1": i + 0.5, "line": {"color": "#ff7f0e", "width": 1}}


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


def focus_links(links: dict[str, str | None], neurons: list[dict[str, Any]], features: list[dict[str, Any]],
                note: str = "") -> html.Div:
    """The selected token as a focus for the other pages: open it in Lens / Circuits, and the neurons and
    SAE features most active here, each a link to its page."""
    buttons = [html.A(label, href=href, className="btn btn-sm btn-outline-primary me-2 mb-1", id=f"tokens-open-{key}")
               for key, label, href in (("lens", "Open in Lens", links.get("lens")),
                                        ("circuits", "Circuits for this prediction", links.get("circuits")))
               if href]
    neuron_badges = [html.A(f"L{n['layer']}.N{n['unit']} {n['value']:.2f}", href=n["href"],
                            className="badge text-bg-light border me-1 mb-1 gb-unit-link") for n in neurons]
    feature_badges = [html.A(f"F{f['unit']} {f['value']:.2f}", href=f["href"],
                             className="badge text-bg-light border me-1 mb-1 gb-unit-link") for f in features]
    return html.Div([
        html.Div(buttons, className="mt-2"),
        html.Div([html.Span("Neurons here ", className="small fw-semibold me-1"),
                  *(neuron_badges or [html.Span("none", className="small text-muted")])],
                 id="tokens-neurons-here", className="mt-1"),
        html.Div([html.Span("Features here ", className="small fw-semibold me-1"),
                  *(feature_badges or [html.Span("no SAE for this model", className="small text-muted")])],
                 id="tokens-features-here", className="mt-1"),
        html.Div(note, className="small text-muted") if note else None,
    ], id="tokens-focus")


def generation_view(pair: dict[str, Any]) -> html.Div:
    """Clean | edited continuations side by side (the prompt's last token marked)."""
    decoding = "greedy" if pair["temperature"] == 0 else f"sampled at T = {pair['temperature']:g}, seed {pair['seed']}"
    cols = [html.Div([html.Div("Clean", className="small fw-semibold"),
                      html.Pre(pair["clean"]["text"], className="gb-gen", id="tokens-gen-clean")], className="col")]
    if pair["edited"] is not None:
        cols.append(html.Div([html.Div("Edited", className="small fw-semibold"),
                              html.Pre(pair["edited"]["text"], className="gb-gen", id="tokens-gen-edited")],
                             className="col"))
    foot = (f"{pair['prompt_tokens']} prompt tokens, {decoding}; edits: {pair['edits']}" if pair["edits"]
            else f"{pair['prompt_tokens']} prompt tokens, {decoding}; no edit list (set one under Edits above to "
                 "compare)")
    return html.Div([html.Div(cols, className="row g-2"), html.Div(foot, className="small text-muted")])


def description_view(result: dict[str, Any]) -> html.Div:
    """A Patchscopes description: the continuation and the first step's top tokens."""
    tops = ", ".join(f"{show_token(t)} {p:.2f}" for t, p in zip(result["top_tokens"], result["top_probs"], strict=True))
    return html.Div([
        html.Div([html.Span(f"L{result['layer']} at {show_token(result['source_token'])} (#{result['position']}) → "),
                  html.Code(result["text"] or "∅", id="tokens-describe-text")], className="small"),
        html.Div(f"first step: {tops}", className="small text-muted"),
    ])
