"""Neurons page pieces: coloured snippets, tables with links, quantile/logit/graph/compare figures.

Plain data (dicts from ``analysis.neurons.views``) in, Dash components / plotly figures out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import dcc, html

from components.figures import CATEGORY_COLOURS, SELECTED_COLOUR, empty_figure, themed
from components.text import show_token, token_label


def neuron_href(model: str, layer: Any, unit: int, **extra: Any) -> str:
    return "/neurons?" + urlencode({"model": model, "layer": layer, "neuron": unit, **extra})


def tokens_href(model: str, text_sample: str | None, layer: Any, unit: int) -> str:
    """The Tokens page with the MLP-neurons site, this layer and this dimension preselected."""
    query = {"model": model, "tool": "dimension", "site": "mlp.hook_post", "layer": layer, "dim": unit}
    if text_sample:
        query["sample"] = text_sample
    return "/tokens?" + urlencode(query)


def token_colour(value: float | None, scale: float) -> str:
    """Red for positive, blue for negative activations; alpha grows with |value| / scale."""
    if value is None or scale <= 0:
        return "transparent"
    alpha = max(0.0, min(1.0, abs(value) / scale))
    return f"rgba(214,39,40,{alpha:.2f})" if value >= 0 else f"rgba(31,119,180,{alpha:.2f})"


def snippet_row(snippet: dict[str, Any], scale: float | None = None, model: str = "") -> html.Div:
    """One snippet: tokens as spans coloured by activation, the max token outlined; hover shows values.

    ``scale`` None colours the row against its own largest |activation| (shown in its badge), so a snippet
    far below the unit's maximum still shows where it fires."""
    values = [abs(v) for v in snippet["acts"] if v is not None]
    row_scale = scale if scale is not None else (max(values) if values else 0.0)
    scale = row_scale
    spans = []
    for k, (tok, value) in enumerate(zip(snippet["tokens"], snippet["acts"], strict=True)):
        pos = snippet["start"] + k
        title = f"{tok!r}  pos {pos}  act {value:.3f}" if value is not None else f"{tok!r}  pos {pos}"
        cls = "gb-tok gb-tok-max" if pos == snippet["pos"] else "gb-tok"
        spans.append(html.Span(token_label(tok), title=title, className=cls,
                               style={"backgroundColor": token_colour(value, scale)}))
    return html.Div(
        [html.Span(f"{snippet['act']:.2f}", className="gb-snip-act badge bg-light text-dark me-2",
                   title=f"max of this snippet; colours span 0 – {scale:.3g}"),
         html.Span(spans, className="gb-snip-text")],
        className="gb-snippet",
    )


def snippets_list(snippets: Sequence[dict[str, Any]], unit_max: float, list_id: str | None = None,
                  per_row: bool = True) -> html.Div:
    """The snippets, each coloured against its own maximum (``per_row``) or the unit's, with the scale stated."""
    if not snippets:
        return html.Div("No snippets (the neuron never activated above its initial value).", className="text-muted small")
    kwargs = {"id": list_id} if list_id else {}
    note = ("Each row is coloured from 0 to its own maximum (its badge); the unit's maximum is "
            f"{unit_max:.3g}." if per_row else f"Colours span 0 – {unit_max:.3g} (the unit's maximum).")
    rows = [snippet_row(s, None if per_row else unit_max) for s in snippets]
    return html.Div([html.Div(note, className="small text-muted mb-1 gb-snip-scale"), *rows], className="gb-snippets",
                    **kwargs)


def stats_line(record: dict[str, Any]) -> html.Div:
    q = record["quantiles"]
    items = [("max", record["max_act"]), ("min", record["min_act"]), ("mean", record["mean_act"]),
             ("median", q.get("0.5")), ("q99", q.get("0.99")), ("q99.9", q.get("0.999"))]
    badges = [html.Span([html.Span(k, className="text-muted me-1"), f"{v:.3g}"], className="me-3")
              for k, v in items if v is not None]
    badges.append(html.Span([html.Span("positive on", className="text-muted me-1"), f"{record['frac_pos']:.1%}"]))
    return html.Div(badges, className="small gb-neuron-stats")


def top_tokens_badges(top: Sequence[dict[str, Any]]) -> html.Div:
    return html.Div([dbc.Badge(f"{show_token(t['token'])} ×{t['count']}", color="light", text_color="dark",
                               className="me-1 mb-1 border", title=f"best activation {t['max_act']:.3f}")
                     for t in top], className="gb-top-tokens")


def quantile_figure(quantiles: dict[str, float], title: str = "Activation quantiles") -> go.Figure:
    qs = sorted(quantiles, key=float)
    fig = go.Figure(go.Scatter(x=[float(q) * 100 for q in qs], y=[quantiles[q] for q in qs], mode="lines+markers",
                               line=dict(color=SELECTED_COLOUR), hovertemplate="q%{x:.2f}%: %{y:.4g}<extra></extra>"))
    fig.update_layout(height=230, xaxis_title="percentile", yaxis_title="activation", margin=dict(l=55, r=10, t=35, b=40))
    return themed(fig, title)


def logit_figure(effects: dict[str, list[dict[str, Any]]] | None) -> go.Figure:
    if not effects:
        return empty_figure("No unembedding (encoder model): no logit effects.")
    pos, neg = effects["positive"], effects["negative"]
    fig = go.Figure()
    fig.add_bar(y=[show_token(t["token"]) for t in reversed(pos)], x=[t["logit"] for t in reversed(pos)], orientation="h",
                marker_color=CATEGORY_COLOURS[1], name="promotes", hovertemplate="%{y}: %{x:.3f}<extra></extra>")
    fig.add_bar(y=[show_token(t["token"]) + " " for t in reversed(neg)], x=[t["logit"] for t in reversed(neg)],
                orientation="h", marker_color=CATEGORY_COLOURS[0], name="suppresses",
                hovertemplate="%{y}: %{x:.3f}<extra></extra>")
    fig.update_layout(height=460, barmode="overlay", xaxis_title="direct logit effect of W_out row",
                      legend=dict(orientation="h", y=1.08, x=1, xanchor="right"), margin=dict(l=110, r=10, t=50, b=40))
    return themed(fig, "Output-logit effects")


def graph_figure(data: dict[str, Any] | None) -> go.Figure:
    """The pattern graph: activating tokens on the right, important context tokens to their left."""
    if not data or not data["graph"]["nodes"]:
        return empty_figure("No pattern graph (no positive snippets).")
    nodes = {n["id"]: n for n in data["graph"]["nodes"]}
    ex, ey = [], []
    for a, b in data["graph"]["edges"]:
        ex += [nodes[a]["x"], nodes[b]["x"], None]
        ey += [nodes[a]["y"], nodes[b]["y"], None]
    fig = go.Figure()
    fig.add_scatter(x=ex, y=ey, mode="lines", line=dict(color="#adb5bd", width=1.5), hoverinfo="skip", showlegend=False)
    ns = list(nodes.values())
    fig.add_scatter(
        x=[n["x"] for n in ns], y=[n["y"] for n in ns], mode="markers+text",
        text=[show_token(n["token"]) for n in ns], textposition="top center",
        marker=dict(size=[12 + 5 * n["count"] for n in ns], color=[n["importance"] for n in ns], colorscale="Reds",
                    cmin=0, cmax=1, line=dict(color="#495057", width=1), showscale=True,
                    colorbar=dict(title="importance", thickness=10)),
        customdata=[[n["count"], n["act"], n["depth"]] for n in ns], showlegend=False,
        hovertemplate="%{text}<br>snippets %{customdata[0]}<br>mean act %{customdata[1]:.3f}"
                      "<br>tokens before max %{customdata[2]}<extra></extra>",
    )
    depth = max(n["depth"] for n in ns)
    fig.update_layout(height=320, xaxis=dict(title="position relative to the max token", tickmode="array",
                                             tickvals=list(range(-depth, 1)), zeroline=False),
                      yaxis=dict(visible=False), margin=dict(l=20, r=10, t=40, b=45))
    return themed(fig, "Token-pattern graph (pruned + ablated contexts)")


def patterns_list(patterns: Sequence[dict[str, Any]]) -> html.Ul:
    items = []
    for p in patterns:
        shown = " ".join(t if t == "·" else repr(t) for t in p["tokens"])
        items.append(html.Li([html.Code(shown), html.Span(
            f"  act {p['act']:.2f}, {p['pruned_act']:.2f} with {p['context_len']} tokens", className="text-muted")]))
    return html.Ul(items, className="small gb-patterns mb-0")


def unit_table(rows: Sequence[dict[str, Any]], model: str, columns: Sequence[tuple[str, str]],
               table_id: str | None = None) -> dbc.Table:
    """Units with links to their page; ``columns`` = (key, header)."""
    head = html.Thead(html.Tr([html.Th("neuron")] + [html.Th(h) for _k, h in columns]))
    body = []
    for r in rows:
        layer = r.get("layer") if r.get("layer") is not None else "sae"
        label = f"L{layer}/{r['unit']}" if layer != "sae" else f"SAE/{r['unit']}"
        cells = [html.Td(dcc.Link(label, href=neuron_href(model, layer, r["unit"])))]
        for key, _h in columns:
            value = r.get(key)
            if isinstance(value, float):
                value = f"{value:.3f}"
            elif isinstance(value, list):
                value = " ".join(repr(v) for v in value)
            elif isinstance(value, str):
                value = repr(value)
            cells.append(html.Td(value))
        body.append(html.Tr(cells))
    kwargs = {"id": table_id} if table_id else {}
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, responsive=True, className="gb-units small", **kwargs)


def compare_figure(a: Sequence[float], b: Sequence[float], label_a: str, label_b: str) -> go.Figure:
    fig = go.Figure(go.Scattergl(x=list(a), y=list(b), mode="markers", marker=dict(size=5, opacity=0.6, color=SELECTED_COLOUR),
                                 hovertemplate=f"{label_a}: %{{x:.3f}}<br>{label_b}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(height=320, xaxis_title=label_a, yaxis_title=label_b)
    return themed(fig, "Activations on the sampled corpus tokens")


def index_summary(indexes: Sequence[dict[str, Any]]) -> html.Div:
    if not indexes:
        return html.Div("No neuron index for this model yet: the default build starts by itself (progress below); "
                        "or build another one here (or `make index`).", className="text-muted small")
    rows = [html.Tr([html.Td(m["index_id"]), html.Td(m["status"]), html.Td(m["corpus"]), html.Td(f"{m['tokens']:,}"),
                     html.Td(m["n_layers"]), html.Td(m["top_k"]), html.Td(m.get("sae") or "")]) for m in indexes]
    head = html.Thead(html.Tr([html.Th(h) for h in ("index", "status", "corpus", "tokens", "layers", "top-k", "SAE")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", className="small mb-0 w-auto")
