"""Neurons page glue: ids -> analysis.neurons -> components.neurons_view.

The index build is a server job (one per index config: two users opening the page start one build); on
the first visit of a model without an index, the default build starts by itself.
"""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, ctx, dcc, html, no_update

from analysis.errors import InputError
from analysis.neurons import (
    IndexConfig,
    NeuronIndex,
    NeuronView,
    build_index,
    compare,
    graph_for,
    layer_ranking,
    list_indexes,
    neuron_record,
    parse_layer,
    parse_unit,
    search_token,
    unit_on_text,
    whole_rows,
)
from analysis.params import parse_int, parse_ranges
from analysis.runtime import get_runtime
from callbacks.common import page_callback, register_job
from callbacks.edits import page_edits
from callbacks.shell import register_model_loading
from components.figures import empty_figure
from components.neurons_view import (
    compare_figure,
    graph_figure,
    index_summary,
    logit_figure,
    patterns_list,
    quantile_figure,
    snippets_list,
    stats_line,
    tokens_href,
    top_tokens_badges,
    unit_table,
)

PAGE = "neurons"
DEFAULT_BUILD_TOKENS = 20_000
MAX_BUILD_TOKENS = 10_000_000
register_model_loading(PAGE)


def layer_options(model_id: str) -> list[dict[str, str]]:
    """Layer dropdown options from the model's best index (no model load)."""
    found = [m for m in list_indexes(get_runtime(), model_id) if m["status"] == "complete"]
    if not found:
        return []
    index = NeuronIndex(found[0]["path"])
    try:
        return [{"label": f"layer {g.layer}" if g.kind == "mlp" else f"SAE ({g.width:,} features)",
                 "value": str(g.layer) if g.kind == "mlp" else "sae"} for g in index.groups]
    finally:
        index.close()


def initial_view(model_id: str) -> dict[str, Any]:
    return {"indexes": list_indexes(get_runtime(), model_id), "layers": layer_options(model_id)}


def _unit_label(layer: Any, unit: Any) -> str:
    return f"SAE feature {unit}" if str(layer) == "sae" else f"Layer {layer} · neuron {unit}"


# ---- the index: list, default build, build job -------------------------------------------------

def build_job(model: str, corpus: str | None, tokens: Any, layers: Any, *_triggers: Any) -> tuple[str, str, Any]:
    """(key, title, work) of an index build (the same function as ``make index``)."""
    runtime = get_runtime()
    lm = runtime.model(model)
    cfg = IndexConfig(model_id=model, corpus=corpus or "training",
                      n_tokens=parse_int(tokens, "Tokens to scan", 16, MAX_BUILD_TOKENS, default=DEFAULT_BUILD_TOKENS,
                                         field="neurons-build-tokens"),
                      layers=parse_ranges(layers, "Layers", 0, lm.info.n_layers - 1, field="neurons-build-layers"))
    from analysis.neurons import index_id

    key = f"neurons-build:{index_id(cfg)}"
    return key, f"Building the neuron index of {model} ({cfg.n_tokens:,} tokens)", \
        lambda job: build_index(runtime, cfg, job, checkpoint_every_s=20.0).name


register_job(PAGE, "neurons-build", [State("neurons-model", "value"), State("neurons-build-corpus", "value"),
                                     State("neurons-build-tokens", "value"), State("neurons-build-layers", "value")],
             build_job, lambda name: f"Index ready: {name}")


@page_callback(PAGE, Output("neurons-index-summary", "children"), Output("neurons-layer", "options"),
               Output("neurons-layer", "value"), Output("neurons-build-key", "data", allow_duplicate=True),
               Output("neurons-build-poll", "disabled", allow_duplicate=True),
               Input("neurons-model", "value"), Input("neurons-build-done", "data"), State("neurons-layer", "value"),
               prevent_initial_call="initial_duplicate")
def refresh_index(model: str, _done: Any, layer: Any) -> tuple:
    """The model's indexes and layers, refreshed after a build; with none, the default build starts."""
    view = initial_view(model)
    values = [o["value"] for o in view["layers"]]
    chosen = layer if layer in values else (values[len(values) // 2] if values else None)
    key, poll_off = no_update, no_update
    if not any(m["status"] == "complete" for m in view["indexes"]):
        made = build_job(model, "training", DEFAULT_BUILD_TOKENS, "")
        get_runtime().jobs.start(*made)  # one job per index: a second visitor joins it
        key, poll_off = made[0], False
    return index_summary(view["indexes"]), view["layers"], chosen, key, poll_off


# ---- one neuron ---------------------------------------------------------------------------------

@page_callback(
    PAGE, Output("neurons-title", "children"), Output("neurons-stats", "children"),
    Output("neurons-top-tokens", "children"), Output("neurons-snippets", "children"),
    Output("neurons-quantiles", "figure"), Output("neurons-logits", "figure"), Output("neurons-similar", "children"),
    Output("neurons-summary", "children"), Output("neurons-tokens-link", "href"),
    Output({"type": "url-state", "page": PAGE}, "data"),
    Input("neurons-model", "value"), Input("neurons-layer", "value"), Input("neurons-neuron", "value"),
    Input("neurons-whole", "value"), Input("neurons-build-done", "data"),
)
def show_neuron(model: str, layer: Any, neuron: Any, whole: bool, _built: Any) -> tuple:
    state = {"model": model, "layer": layer, "neuron": neuron, "whole": 1 if whole else None}
    if layer in (None, ""):
        if not any(m["status"] == "complete" for m in list_indexes(get_runtime(), model)):
            raise InputError(f"No neuron index for {model} yet: the default build is running (see the Index tab).")
        raise InputError("Pick a layer and a neuron (or a top-ranked neuron).")
    runtime = get_runtime()
    record = neuron_record(runtime, model, layer, neuron, n_snippets=None)
    snippets = whole_rows(runtime, model, layer, parse_unit(neuron)) if whole else record["snippets"]
    sim_cols = [("cosine", "cosine"), ("jaccard", "Jaccard")]
    href = tokens_href(model, None, layer, record["unit"]) if str(layer) != "sae" else "/tokens"
    return (
        _unit_label(layer, neuron), stats_line(record), top_tokens_badges(record["top_tokens"]),
        snippets_list(snippets, max(abs(record["max_act"]), 1e-6), "neurons-snippet-list"),
        quantile_figure(record["quantiles"]), logit_figure(record["logit_effects"]),
        unit_table(record["similar"], model, sim_cols, "neurons-similar-table"),
        record["explanation"]["summary"], href, state,
    )


@page_callback(PAGE, Output("neurons-graph", "figure"), Output("neurons-patterns", "children"),
               Input("neurons-model", "value"), Input("neurons-layer", "value"), Input("neurons-neuron", "value"))
def show_graph(model: str, layer: Any, neuron: Any) -> tuple:
    if layer in (None, "") or neuron in (None, ""):
        return empty_figure(), ""
    view = NeuronView.open(get_runtime(), model)
    data = graph_for(view, parse_layer(layer, "neurons-layer"), parse_unit(neuron, "neurons-neuron"))
    return graph_figure(data), patterns_list(data["patterns"])


@page_callback(PAGE, Output("neurons-llm", "children"), Input("neurons-llm-button", "n_clicks"),
               State("neurons-model", "value"), State("neurons-layer", "value"), State("neurons-neuron", "value"),
               prevent_initial_call=True)
def ask_llm(_clicks: int, model: str, layer: Any, neuron: Any) -> Any:
    record = neuron_record(get_runtime(), model, layer, neuron, n_similar=0, llm=True)
    return record["explanation"]["llm"] or "No OpenAI-compatible endpoint is configured (OPENAI_BASE_URL in config.py)."


@page_callback(PAGE, Output("neurons-try-result", "children"), Input("neurons-try-run", "n_clicks"),
               Input("neurons-try-text", "n_submit"), State("neurons-model", "value"), State("neurons-layer", "value"),
               State("neurons-neuron", "value"), State("neurons-try-text", "value"), State("shell-edits-store", "data"),
               prevent_initial_call=True)
def try_text(_clicks: int, _submit: int, model: str, layer: Any, neuron: Any, text: str | None,
             edits_store: dict | None = None) -> Any:
    """Neuroscope's "try your own text": the neuron on every token of the typed text (and, with the shared
    edit list on, the same neuron in the edited model below it)."""
    runtime = get_runtime()
    body = runtime.check_text(text, field="neurons-try-text")
    out = unit_on_text(runtime, model, layer, neuron, body)
    edits = page_edits(runtime, model, edits_store) if str(layer) != "sae" else []
    rows = [("clean" if edits else None, out, "neurons-try-snippet")]
    if edits:
        rows.append(("edited", unit_on_text(runtime, model, layer, neuron, body, edits=edits), "neurons-try-edited"))
    parts = []
    for name, result, list_id in rows:
        acts = result["acts"]
        row = {"tokens": result["tokens"], "acts": acts, "start": 0,
               "pos": int(max(range(len(acts)), key=acts.__getitem__)), "act": result["max_act"]}
        label = f"{name}: " if name else ""
        parts += [html.Div(f"{label}max on this text {result['max_act']:.3f} (the index's maximum: "
                           f"{result['index_max']:.3f})", className="small text-muted mb-1"),
                  snippets_list([row], max(abs(out["index_max"]), 1e-6), list_id, per_row=False)]
    return html.Div(parts)


# ---- ranking, search, compare --------------------------------------------------------------------

@page_callback(PAGE, Output("neurons-top", "options"), Output("neurons-top", "value"), Output("neurons-neuron", "value"),
               Input("neurons-model", "value"), Input("neurons-layer", "value"), Input("neurons-sort", "value"),
               Input("neurons-neuron", "value"), Input("neurons-top", "value"))
def on_ranked(model: str, layer: Any, sort: str, neuron: Any, picked: Any) -> tuple:
    """Picking a top neuron opens it; anything else refreshes the ranking. One callback both ways: Dash
    stalls a loop that runs through two callbacks."""
    if ctx.triggered_id == "neurons-top":
        return no_update, no_update, no_update if picked is None else int(picked)
    return (*ranked_options(model, layer, sort, neuron, picked), no_update)


def ranked_options(model: str, layer: Any, sort: str, neuron: Any, picked: Any) -> tuple:
    """(options, picker value): the layer's top neurons; the picker shows the current neuron only when it is
    one of them."""
    if layer in (None, ""):
        return [], None
    ranked = layer_ranking(get_runtime(), model, layer, sort or "max", limit=100)["neurons"]
    options = [{"label": f"#{r['unit']}  max {r['max_act']:.2f}  range {r['range']:.2f}  "
                         + " ".join(repr(t) for t in r["top_tokens"]), "value": r["unit"]} for r in ranked]
    try:
        current = int(neuron)
    except (TypeError, ValueError):
        current = None
    shown = current if current in {o["value"] for o in options} else None
    return options, shown if shown != picked else no_update


@page_callback(PAGE, Output("neurons-search-results", "children"), Input("neurons-search-button", "n_clicks"),
               Input("neurons-search", "n_submit"), State("neurons-search", "value"), State("neurons-model", "value"),
               prevent_initial_call=True)
def search(_clicks: int, _submit: int, token: str, model: str) -> Any:
    found = search_token(get_runtime(), model, token or "", limit=100)
    if not found["results"]:
        return html.Div(f"No neuron has {found['token_strings']} among its top tokens.", className="text-muted small")
    cols = [("token", "token"), ("count", "of top positions"), ("max_act", "best activation")]
    return html.Div([html.Div(f"token ids {found['token_ids']}", className="text-muted small mb-1"),
                     unit_table(found["results"], model, cols, "neurons-search-table")])


@page_callback(PAGE, Output("neurons-compare", "children"), Output("neurons-compare-figure", "figure"),
               Output("neurons-compare-figure-box", "style"),
               Input("neurons-model", "value"), Input("neurons-layer", "value"), Input("neurons-neuron", "value"),
               Input("neurons-layer-b", "value"), Input("neurons-neuron-b", "value"))
def show_compare(model: str, layer: Any, neuron: Any, layer_b: Any, neuron_b: Any) -> tuple:
    if None in (layer, neuron, layer_b, neuron_b) or "" in (layer, neuron, layer_b, neuron_b):
        return (html.Div("Pick a second neuron (layer and index above) to compare with.", className="text-muted small"),
                empty_figure(), {"display": "none"})
    runtime = get_runtime()
    pair = compare(runtime, model, (layer, neuron), (layer_b, neuron_b))
    recs = [neuron_record(runtime, model, layer, neuron, n_snippets=8, n_similar=0),
            neuron_record(runtime, model, layer_b, neuron_b, n_snippets=8, n_similar=0)]
    cols = []
    for rec, (lay, unit) in zip(recs, [(layer, neuron), (layer_b, neuron_b)], strict=True):
        cols.append(html.Div([html.H6(_unit_label(lay, unit)), stats_line(rec), top_tokens_badges(rec["top_tokens"]),
                              html.Div(rec["explanation"]["summary"], className="small"),
                              snippets_list(rec["snippets"], max(abs(rec["max_act"]), 1e-6))],
                             className="col-lg-6 gb-compare-col"))
    head = html.Div(f"cosine {pair['cosine']:.3f} · Jaccard {pair['jaccard']:.3f} (both symmetric)",
                    className="fw-semibold mb-2", id="neurons-compare-sims")
    fig = compare_figure(pair["sample_a"], pair["sample_b"], _unit_label(layer, neuron), _unit_label(layer_b, neuron_b))
    return html.Div([head, html.Div(cols, className="row g-3 mx-0")]), fig, {}  # mx-0: no gutter overflow


__all__ = ["dcc"]
