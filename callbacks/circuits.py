"""Circuits page glue: controls -> analysis.circuits -> components.circuits_figures (and the patching job)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from analysis.circuits import (
    PATCH_SITES,
    attribute_run,
    circuit_sites,
    contributions,
    edge_heads,
    neuron_shares,
    patching_grid,
    prune_graph,
)
from analysis.circuits.decompose import require_causal
from analysis.circuits.patching import check_request
from analysis.errors import InputError
from analysis.params import parse_choice, parse_int
from analysis.runtime import get_runtime
from callbacks.common import page_callback, register_job, register_picker_callbacks
from callbacks.edits import edits_input, page_edits
from callbacks.shell import register_model_loading
from components.circuits_figures import (
    bars_figure,
    graph_figure,
    head_heatmap,
    layer_bars,
    patching_figure,
    source_strip,
)
from components.feedback import RUNNING_HIDDEN, RUNNING_SHOWN
from components.neurons_view import neuron_href
from components.pickers import USER_SAMPLE
from components.text import show_token

P = "circuits"
DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"
DEFAULT_CORRUPTED = "The Colosseum is located in the city of"
TABS = ("attribution", "graph", "patching")
CONTROL_IDS = ["model", "sample", "text", "position", "target", "contrast"]
register_picker_callbacks(P)
register_model_loading(P)


def _text(sample: str | None, text: str | None) -> str:
    return get_runtime().text(sample, text, field=f"{P}-text")


def _run(model: str, body: str):
    runtime = get_runtime()
    lm = runtime.model(model)
    require_causal(lm)
    return lm, runtime.run(model, body, circuit_sites(lm.info.n_layers))


def tokens_href(model: str, sample: str | None, layer: int, head: int | None, token: int) -> str:
    """The Tokens page on this head's attention from ``token`` (library samples carry over; typed text does not)."""
    query: dict[str, Any] = {"model": model, "tool": "attention", "layer": layer, "t": token}
    if head is not None:
        query["head"] = head
    if sample and sample != USER_SAMPLE:
        query["sample"] = sample
    return "/tokens?" + urlencode(query)


def attribution_view(model: str, sample: str | None, text: str | None, position: Any, target: str | None,
                     contrast: str | None, edits_store: dict | None = None) -> dict[str, Any]:
    lm, run = _run(model, _text(sample, text))
    att = attribute_run(lm, run, position, target or "top", contrast or None)
    edits = page_edits(get_runtime(), model, edits_store)
    if edits:
        return edited_attribution_view(lm, run, att, edits)
    where = f"position {att.position} ({show_token(att.tokens[att.position])!s})"
    title = f"{att.target.label} at {where}"
    parts = (f"logit {att.logit:.3f} = embedding {att.embed:.3f} + heads {att.heads.sum():.3f} + attention biases "
             f"{att.attn_bias.sum():.3f} + MLPs {att.mlp.sum():.3f} + norm/unembedding biases {att.constant:.3f} "
             f"(sum {att.total:.3f})")
    if att.capped_logit is not None:
        parts += f"; after the model's soft-cap {att.capped_logit:.3f}"
    order = abs(att.heads).ravel().argsort()[::-1][:3]
    top = ", ".join(f"L{i // lm.info.n_heads}H{i % lm.info.n_heads} {att.heads.ravel()[i]:+.3f}" for i in order)
    return {
        "heads": head_heatmap(att.heads.tolist(), f"Head shares · {title}"),
        "layers": layer_bars(att.attention.tolist(), att.mlp.tolist(), att.embed, f"Per-layer shares · {title}"),
        "strip": source_strip(att.tokens, att.sources.tolist(), att.position,
                              f"What each source token sent through attention to {where}"),
        "summary": f"{parts}. Strongest heads: {top}.",
        "n_tokens": run.n_tokens, "position": att.position,
    }


def edited_attribution_view(lm: Any, run: Any, att: Any, edits: list) -> dict[str, Any]:
    """The same target's shares in the edited run, shown as edited − clean (heads, layers, sources)."""
    runtime = get_runtime()
    edited_run = runtime.run(lm.model_id, run.text, circuit_sites(lm.info.n_layers), edits=edits)
    negative = f"#{att.target.negative}" if att.target.negative is not None else None
    edited = attribute_run(lm, edited_run, att.position, f"#{att.target.positive}", negative)
    where = f"position {att.position} ({show_token(att.tokens[att.position])!s})"
    title = f"edited − clean · {att.target.label} at {where}"
    heads = edited.heads - att.heads
    order = abs(heads).ravel().argsort()[::-1][:3]
    top = ", ".join(f"L{i // lm.info.n_heads}H{i % lm.info.n_heads} {heads.ravel()[i]:+.3f}" for i in order)
    outside = edited.logit - edited.total  # what an edit added to the residual itself (feature, patch, steer)
    summary = (f"With the edits ({';'.join(e.text for e in edits)}): logit {att.logit:.3f} → {edited.logit:.3f} "
               f"({edited.logit - att.logit:+.3f}). Largest head changes: {top}. MLPs {att.mlp.sum():.3f} → "
               f"{edited.mlp.sum():.3f}, heads {att.heads.sum():.3f} → {edited.heads.sum():.3f}"
               + (f"; {outside:+.3f} of the edited logit was written into the residual by the edit itself, outside "
                  "every component" if abs(outside) > 1e-3 else "") + ".")
    return {
        "heads": head_heatmap(heads.tolist(), f"Head shares, {title}"),
        "layers": layer_bars((edited.attention - att.attention).tolist(), (edited.mlp - att.mlp).tolist(),
                             edited.embed - att.embed, f"Per-layer shares, {title}"),
        "strip": source_strip(att.tokens, (edited.sources - att.sources).tolist(), att.position,
                              f"Change in what each source token sent through attention to {where}"),
        "summary": summary, "n_tokens": run.n_tokens, "position": att.position,
        "edited_logit": edited.logit, "head_deltas": heads,
    }


def graph_view(model: str, sample: str | None, text: str | None, position: Any, threshold: Any,
               renormalize: Any) -> dict[str, Any]:
    runtime = get_runtime()
    contrib = contributions(runtime, model, _text(sample, text))
    graph = prune_graph(contrib, position, threshold, bool(renormalize))
    data = graph.to_dict()
    title = (f"Contribution graph to position {graph.position} ({show_token(graph.tokens[graph.position])}) · "
             f"threshold {graph.threshold:g}{' · renormalized' if graph.renormalize else ''}")
    note = (f"{len(graph.edges)} edges, {len(graph.nodes)} nodes above {graph.threshold:g}. Blue: attention "
            "(source → target, the heads summed), red: MLP, grey: residual. Click an attention edge for its heads, "
            "an MLP square for its neurons.")
    return {"figure": graph_figure(data, title), "note": note}


def edge_detail(model: str, sample: str | None, text: str | None, point: dict, position: Any, target: str | None,
                contrast: str | None) -> list:
    """The heads of a clicked attention edge, or the top neurons of a clicked MLP node, with links."""
    lm, run = _run(model, _text(sample, text))
    if point.get("kind") == "edge":
        layer = parse_int(point.get("layer"), "Layer", 0, lm.info.n_layers - 1)
        dest = parse_int(point.get("target"), "Target position", 0, run.n_tokens - 1)
        source = parse_int(point.get("source"), "Source position", 0, dest)
        per_head = edge_heads(lm, run, layer, dest)[source]
        labels = [f"H{h}" for h in range(len(per_head))]
        best = int(per_head.argmax())
        fig = bars_figure(labels, per_head.tolist(), f"L{layer}: heads of {source} → {dest}", "contribution")
        links = [dbc.Button(f"L{layer} H{h} attention from {dest} in Tokens", href=tokens_href(model, sample, layer, h, dest),
                            size="sm", color="link", className="p-0 me-3") for h in sorted(range(len(per_head)),
                                                                                   key=lambda h: -per_head[h])[:3]]
        return [dcc.Graph(figure=fig, config={"displaylogo": False}), html.Div(links),
                html.Div(f"Strongest head: H{best} ({per_head[best]:.3f} of the update).", className="small text-muted")]
    if point.get("kind") == "mlp":
        layer = parse_int(point.get("layer"), "Layer", 0, lm.info.n_layers - 1)
        token = parse_int(point.get("token"), "Position", 0, run.n_tokens - 1)
        att = attribute_run(lm, run, position, target or "top", contrast or None)
        shares = neuron_shares(lm, run, layer, token, att.target, k=12)
        fig = bars_figure([f"N{s.neuron}" for s in shares], [s.share for s in shares],
                          f"L{layer} MLP at {token}: neurons' direct share of {att.target.label}", "activation × W_out·dir")
        links = [dbc.Button(f"neuron {s.neuron} ({s.activation:+.2f})", href=neuron_href(model, layer, s.neuron),
                            size="sm", color="link", className="p-0 me-3") for s in shares[:6]]
        return [dcc.Graph(figure=fig, config={"displaylogo": False}), html.Div(links)]
    return [html.Div(f"{point.get('name', '')}: click an attention edge (its midpoint) or an MLP square.",
                     className="small text-muted")]


def patch_job(model: str, sample: str | None, text: str | None, corrupted: str | None, noise: str | None,
              seed: Any, site: str, positions: Any, target: str | None, contrast: str | None) -> tuple[str, str, Any]:
    """The Run patching button: the grid as a server job (progress per layer; one job per settings)."""
    runtime = get_runtime()
    body = _text(sample, text)
    site = parse_choice(site, "Patched site", PATCH_SITES, field=f"{P}-patch-site")
    corrupted = corrupted if corrupted and corrupted.strip() else None
    corruption, _cells, _n = check_request(runtime, model, body, corrupted, noise, seed, positions)
    seed_i = corruption.seed
    target = target or "top"  # never stripped: " Paris" and "Paris" are different tokens
    if target == "true":
        raise InputError("Patching reads the last position, whose true next token is unknown: use top or a token.",
                         field=f"{P}-target")
    key = f"circuits-patch:{model}:{hash((body, corrupted, noise, seed_i, site, positions, target, contrast))}"

    def work(job: Any) -> Any:
        return patching_grid(runtime, model, body, corrupted, noise_positions=noise, seed=seed_i, site=site,
                             target=target, contrast=contrast or None, positions=positions, job=job)

    return key, f"Patching ({site})", work


def describe_patch(grid: Any) -> str:
    return (f"{grid.values.size:,} cells in {grid.forwards} batched forwards. {grid.target_label}: clean "
            f"{grid.clean_value:.4f}, corrupted {grid.corrupted_value:.4f} ({grid.corruption}).")


def patch_figure(grid: Any, normalized: bool = True) -> Any:
    if normalized:
        values, colour, mid = grid.recovered.tolist(), "recovered", None
    else:
        values, colour, mid = grid.values.tolist(), grid.target_label, None
    title = (f"Patching {grid.site} · {grid.target_label} · clean {grid.clean_value:.3f}, corrupted "
             f"{grid.corrupted_value:.3f}")
    return patching_figure(values, grid.positions, grid.tokens, title, colour, mid)


register_job(P, f"{P}-patch",
             [State(f"{P}-{name}", "value") for name in ("model", "sample", "text", "corrupted", "noise-positions",
                                                         "seed", "patch-site", "positions", "target", "contrast")],
             patch_job, describe_patch)


@page_callback(
    P, Output(f"{P}-heads", "figure"), Output(f"{P}-layers", "figure"), Output(f"{P}-strip", "figure"),
    Output(f"{P}-summary", "children"),
    *[Input(f"{P}-{name}", "value") for name in CONTROL_IDS], edits_input(),
    running=[(Output(f"{P}-run-box", "style"), RUNNING_SHOWN, RUNNING_HIDDEN)],
)
def update_attribution(model, sample, text, position, target, contrast, edits_store=None):  # type: ignore[no-untyped-def]
    out = attribution_view(model, sample, text, position, target, contrast, edits_store)
    return out["heads"], out["layers"], out["strip"], out["summary"]


@page_callback(
    P, Output(f"{P}-graph", "figure"), Output(f"{P}-graph-note", "children"),
    Input(f"{P}-tabs", "active_tab"), Input(f"{P}-model", "value"), Input(f"{P}-sample", "value"),
    Input(f"{P}-text", "value"), Input(f"{P}-position", "value"), Input(f"{P}-threshold", "value"),
    Input(f"{P}-renorm", "value"),
)
def update_graph(tab, model, sample, text, position, threshold, renorm):  # type: ignore[no-untyped-def]
    if tab != "graph":
        return no_update, no_update
    out = graph_view(model, sample, text, position, threshold, bool(renorm))
    return out["figure"], out["note"]


@page_callback(
    P, Output(f"{P}-graph-detail", "children"), Input(f"{P}-graph", "clickData"),
    *[State(f"{P}-{name}", "value") for name in CONTROL_IDS], prevent_initial_call=True,
)
def graph_click(click, model, sample, text, position, target, contrast):  # type: ignore[no-untyped-def]
    points = (click or {}).get("points") or []
    if not points or not isinstance(points[0].get("customdata"), dict):
        return no_update
    return edge_detail(model, sample, text, points[0]["customdata"], position, target, contrast)


@page_callback(
    P, Output(f"{P}-head-link", "children"), Input(f"{P}-heads", "clickData"),
    State(f"{P}-model", "value"), State(f"{P}-sample", "value"), State(f"{P}-text", "value"),
    State(f"{P}-position", "value"), prevent_initial_call=True,
)
def head_click(click, model, sample, text, position):  # type: ignore[no-untyped-def]
    points = (click or {}).get("points") or []
    if not points:
        return no_update
    layer, head = int(points[0]["y"]), int(points[0]["x"])
    _lm, run = _run(model, _text(sample, text))
    token = run.n_tokens - 1 if position in (None, "") else parse_int(position, "Position", 0, run.n_tokens - 1)
    return dbc.Button(f"Open L{layer} H{head}'s attention from position {token} in Tokens",
                      href=tokens_href(model, sample, layer, head, token), size="sm", color="link", className="p-0")


@page_callback(
    P, Output(f"{P}-patch-figure", "figure"), Output(f"{P}-patch-box", "style"),
    Input(f"{P}-patch-done", "data"), Input(f"{P}-patch-scale", "value"), State(f"{P}-patch-key", "data"),
    prevent_initial_call=True,
)
def show_patching(done, scale, key):  # type: ignore[no-untyped-def]
    status = get_runtime().jobs.status(key) if key else None
    if status is None or status.state != "done":
        return no_update, no_update
    return patch_figure(status.result, scale != "raw"), {}


@page_callback(P, Output({"type": "url-state", "page": P}, "data"),
               *[Input(f"{P}-{name}", "value") for name in ("model", "sample", "position", "target", "contrast",
                                                            "threshold")],
               Input(f"{P}-tabs", "active_tab"))
def url_state(model, sample, position, target, contrast, threshold, tab):  # type: ignore[no-untyped-def]
    return {"model": model, "sample": None if sample == USER_SAMPLE else sample, "pos": position, "target": target,
            "contrast": contrast, "threshold": threshold, "tab": tab}
