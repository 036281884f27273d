"""Features page pieces: token strip, snippets, quantile bins, tables, SAE info, steering output.

Plain data (lists, dicts) in, Dash components out. No torch, no analysis import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import html

from components.text import token_label

COMMAND = "make sae"


def colour(value: float, scale: float) -> str:
    """Orange-red with alpha by value / scale (SAE activations are >= 0)."""
    if scale <= 0 or value <= 0:
        return "transparent"
    return f"rgba(230,85,13,{min(1.0, value / scale):.2f})"


def token_strip(tokens: Sequence[str], acts: Sequence[float], feature: int, outside: Sequence[bool] | None = None,
                strip_id: str = "features-strip") -> html.Div:
    """The feature's activation on every token of the text (hover for the value). Tokens the SAE was not
    trained on (the first one, an attention sink, and massive-activation tokens) are hatched and left out
    of the colour scale."""
    outside = list(outside) if outside is not None else [i == 0 for i in range(len(acts))]
    inside = [a for a, out in zip(acts, outside, strict=True) if not out]
    scale = max(inside) if inside and max(inside) > 0 else 0.0
    spans = []
    for i, (tok, a, out) in enumerate(zip(tokens, acts, outside, strict=True)):
        note = " (outside the SAE's training distribution)" if out else ""
        spans.append(html.Span(token_label(tok), title=f"#{i} {tok!r}  act {a:.3f}{note}",
                               className="gb-ftok gb-ftok-out" if out else "gb-ftok",
                               style={"backgroundColor": "transparent" if out else colour(a, scale)}))
    n_active = sum(a > 0 for a, out in zip(acts, outside, strict=True) if not out)
    head = html.Div(
        f"Feature {feature} on this text: max {max(inside, default=0.0):.3f}, active on {n_active} of {len(inside)} "
        f"tokens (colour scale 0 – {scale:.3f}; {sum(outside)} hatched token(s) are outside what the SAE was "
        "trained on: the first token and massive activations)",
        className="small text-muted mb-1",
    )
    return html.Div([head, html.Div(spans, className="gb-fstrip")], id=strip_id)


def snippet(example: dict[str, Any], scale: float) -> html.Div:
    """One corpus snippet, the activating token outlined."""
    spans = []
    for k, (tok, a) in enumerate(zip(example["tokens"], example["acts"], strict=True)):
        cls = "gb-ftok gb-ftok-max" if k == example["center"] else "gb-ftok"
        spans.append(html.Span(token_label(tok), title=f"{tok!r} act {a:.3f}", className=cls,
                               style={"backgroundColor": colour(a, scale)}))
    return html.Div([html.Span(f"{example['value']:.2f}", className="badge bg-light text-dark me-2 gb-fval"),
                     html.Span(spans)], className="gb-fsnippet")


def examples_section(stats: dict[str, Any]) -> html.Div:
    """Top activations and quantile-bin samples from the corpus scan."""
    scale = stats["max_act"] or 1.0
    if not stats["top"]:
        return html.Div(f"Feature {stats['feature']} never fired on the {stats['n_tokens']:,} scanned tokens.",
                        className="text-muted small")
    parts: list[Any] = [html.H6("Top activations", className="mt-2"),
                        html.Div([snippet(e, scale) for e in stats["top"]], id="features-top-examples")]
    items = []
    for low, high, examples in stats["bins"]:
        body = [snippet(e, scale) for e in examples] or [html.Div("(empty)", className="text-muted small")]
        items.append(dbc.AccordionItem(body, title=f"Quantile bin {low:.2f} – {high:.2f}"))
    parts += [html.H6("Samples by quantile bin (of nonzero activations)", className="mt-3"),
              dbc.Accordion(items, start_collapsed=True, always_open=True, flush=True)]
    return html.Div(parts)


def sae_info(info: dict[str, Any]) -> html.Div:
    """One line about the SAE, with its held-out figures and training budget when known (glassbox.json)."""
    bits: list[Any] = [html.B(info["ref"]), f" · {info['d_sae']:,} features · d_in {info['d_in']} · site ",
                       html.Code(info["site"]), f" (hook {info['hook_name']})"]
    meta = info.get("metrics") or {}
    held = meta.get("heldout") or (meta if "l0" in meta else {})
    if held:
        bits.append(f" · held-out: L0 {held['l0']:.1f}, explained variance {held['explained_variance']:.3f}, "
                    f"loss recovered {held['loss_recovered']:.3f}, dead {held['dead_fraction']:.1%}")
    if meta.get("tokens_trained"):
        epochs = (meta.get("options") or {}).get("epochs")
        bits.append(f" · trained with sae-lens ({meta.get('architecture', '')}) on {meta['tokens_trained']:,} tokens"
                    + (f" × {epochs} epochs" if epochs else ""))
    if info.get("path"):
        bits.append(html.Span(f" · {info['path']}", className="text-muted"))
    return html.Div(bits, className="small mb-2", id="features-sae-info")


def density_line(density: float | None, training_density: float | None, n_tokens: int | None) -> html.Div:
    parts = []
    if density is not None:
        parts.append(f"Density {density:.3%} of {n_tokens:,} scanned tokens")
    if training_density is not None:
        parts.append(f"density during training {training_density:.3%}")
    return html.Div(" · ".join(parts) or "Density: scan the corpus to measure it.", className="small",
                    id="features-density")


def top_feature_badges(top: Sequence[tuple[int, float]], selected: int) -> html.Div:
    """Clickable badges for the features strongest on the text."""
    if not top:
        return html.Div("No feature fires on this text.", className="text-muted small")
    buttons = [
        dbc.Button(f"{f} · {v:.1f}", id={"type": "features-pick", "index": int(f)}, size="sm",
                   color="primary" if f == selected else "light", className="me-1 mb-1", n_clicks=0,
                   title=f"Feature {f}, max activation {v:.3f} on this text")
        for f, v in top
    ]
    return html.Div([html.Span("Strongest on this text: ", className="small text-muted me-1"), *buttons])


def no_sae_note(message: str) -> html.Div:
    """Shown inside the tabs that need an SAE when there is none (the tabs that need only a vector still work)."""
    return html.Div([html.B("No SAE loaded. "), html.Span(message), html.Span(" Or: "), html.Code(COMMAND)],
                    className="small text-muted gb-no-sae")


def neighbours_table(title: str, rows: Sequence[dict[str, Any]], value_key: str, hrefs: Sequence[str],
                     table_id: str) -> html.Div:
    """Related features (by activation correlation or decoder cosine), each linking to its page."""
    if not rows:
        return html.Div([html.H6(title, className="mt-2"), html.Div("None yet.", className="small text-muted")])
    body = html.Tbody([html.Tr([html.Td(html.A(str(r["feature"]), href=href)), html.Td(f"{r[value_key]:.3f}")])
                       for r, href in zip(rows, hrefs, strict=True)])
    return html.Div([html.H6(title, className="mt-2"),
                     dbc.Table([html.Thead(html.Tr([html.Th("feature"), html.Th(value_key)])), body], size="sm",
                               className="gb-ftable mb-1", id=table_id)])


def explanation_box(explanation: dict[str, Any] | None) -> html.Div:
    if not explanation:
        return html.Div("The explanation needs the corpus scan.", className="small text-muted", id="features-explanation")
    parts = [html.Div(explanation["summary"], className="small")]
    if explanation.get("llm"):
        parts.append(html.Div(["LLM: ", html.I(explanation["llm"])], className="small mt-1"))
    return html.Div([html.H6("Explanation", className="mt-2"), *parts], id="features-explanation")


def ranking_table(rows: Sequence[dict[str, Any]], hrefs: Sequence[str]) -> html.Div:
    """The prompt-centric view: the features most active on the user's text."""
    if not rows:
        return html.Div("No feature fires on this text.", className="small text-muted", id="features-ranking")
    head = html.Thead(html.Tr([html.Th(h) for h in ("feature", "max on the text", "at token", "active tokens")]))
    body = html.Tbody([html.Tr([html.Td(html.A(str(r["feature"]), href=href)), html.Td(f"{r['max']:.3f}"),
                                html.Td([html.Code(token_label(r["token"])), f" #{r['position']}"]),
                                html.Td(r["active_tokens"])]) for r, href in zip(rows, hrefs, strict=True)])
    return dbc.Table([head, body], size="sm", hover=True, className="gb-ftable", id="features-ranking")


def token_table(rows: Sequence[dict[str, Any]]) -> dbc.Table:
    """Token list: rank, token, ratio, the two cosines."""
    head = html.Thead(html.Tr([html.Th(h) for h in ("#", "token", "id", "ratio", "cos(v, e)", "cos(c, e)")]))
    body = html.Tbody([
        html.Tr([html.Td(i + 1), html.Td(html.Code(token_label(r["token"]))), html.Td(r["token_id"]),
                 html.Td(f"{r['ratio']:.4f}"), html.Td(f"{r['cos_v']:.3f}"), html.Td(f"{r['cos_c']:.3f}")])
        for i, r in enumerate(rows)
    ])
    return dbc.Table([head, body], size="sm", striped=True, hover=True, className="gb-ftable", id="features-token-table")


def token_cloud(rows: Sequence[dict[str, Any]], n: int = 40) -> html.Div:
    """The first tokens of the list inline (quick reading)."""
    return html.Div([html.Span(token_label(r["token"]), className="gb-fchip") for r in rows[:n]], className="mb-2")


def steering_output(result: dict[str, Any]) -> dbc.Row:
    """Steered and unsteered continuations side by side."""
    how = (f"added {result['strength']:+g} × W_dec[{result['feature']}]" if result["mode"] == "add"
           else f"feature {result['feature']} clamped at {result['strength']:g}")

    def card(title: str, text: str, acts: Sequence[float], cid: str) -> dbc.Col:
        mean = sum(acts) / len(acts) if acts else 0.0
        return dbc.Col(dbc.Card([
            dbc.CardHeader(title),
            dbc.CardBody([html.Pre(result["prompt"] + "", className="gb-fprompt mb-0 d-inline"),
                          html.Pre(text, className="gb-fgen d-inline", id=cid),
                          html.Div(f"mean feature activation on generated tokens: {mean:.2f}",
                                   className="small text-muted mt-2")]),
        ]), md=6)

    return dbc.Row([card(f"Steered ({how})", result["steered"], result["steered_acts"], "features-steered"),
                    card("Unsteered", result["unsteered"], result["unsteered_acts"], "features-unsteered")],
                   className="g-3")


def search_table(token: str, hits: Sequence[dict[str, Any]], hrefs: Sequence[str]) -> html.Div:
    if not hits:
        return html.Div(f"No feature has {token!r} among its top activations or top logit effects.",
                        className="text-muted small")
    head = html.Thead(html.Tr([html.Th(h) for h in ("feature", "in top-10 activations", "top logit effect", "max act")]))
    body = html.Tbody([
        html.Tr([html.Td(html.A(str(h["feature"]), href=href)), html.Td(h["in_top_activations"]),
                 html.Td("yes" if h["in_logit_effects"] else ""), html.Td(f"{h['max_act']:.2f}")])
        for h, href in zip(hits, hrefs, strict=True)
    ])
    return html.Div([html.Div(f"Features for token {token!r}: {len(hits)}", className="small mb-1"),
                     dbc.Table([head, body], size="sm", hover=True, className="gb-ftable", id="features-search-table")])


def definitions_list(defs: Sequence[tuple[str, float]]) -> html.Ol:
    return html.Ol([html.Li([html.Code(token_label(text)), html.Span(f"  p = {p:.2e}", className="text-muted small")])
                    for text, p in defs], className="small", id="features-definitions")


def edit_effect_line(feature: int, clean_max: float, edited_max: float, mean_delta: float, where: int,
                     edits: str) -> html.Div:
    """Feature ``feature`` on this text, clean vs edited (the shared edit list)."""
    return html.Div([
        html.B(f"With the edits ({edits}): "),
        html.Span(f"feature {feature} on this text peaks at {clean_max:.3f} clean → {edited_max:.3f} edited; "
                  f"mean |Δ| over its tokens {mean_delta:.3f}, largest at token #{where}. "),
        html.Span("(A feature edit sets the feature's decoder share at its hook; the SAE re-encoding the edited "
                  "residual need not read the set value exactly.)", className="text-muted"),
    ], id="features-edit-line", className="alert alert-warning py-1 px-2 mb-0")
