"""Neurons page glue: ids -> analysis.neurons_views -> components.neurons_view."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback, html, no_update

from analysis.neurons import list_indexes
from analysis.runtime import get_runtime
from callbacks.common import friendly
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
    top_tokens_badges,
    unit_table,
)

PAGE = "neurons"


def layer_options(model_id: str) -> list[dict[str, str]]:
    """Layer dropdown options from the model's best index (no model load)."""
    found = [m for m in list_indexes(get_runtime(), model_id) if m["status"] == "complete"]
    if not found:
        return []
    from analysis.neurons_store import NeuronIndex

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


@callback(
    Output("neurons-index-summary", "children"),
    Output("neurons-layer", "options"),
    Input("neurons-model", "value"),
    Input("neurons-build-status", "children"),
)
def refresh_index(model: str, _status: Any) -> tuple:
    view = initial_view(model)
    return index_summary(view["indexes"]), view["layers"]


@callback(
    Output("neurons-title", "children"),
    Output("neurons-stats", "children"),
    Output("neurons-top-tokens", "children"),
    Output("neurons-snippets", "children"),
    Output("neurons-quantiles", "figure"),
    Output("neurons-logits", "figure"),
    Output("neurons-similar", "children"),
    Output("neurons-summary", "children"),
    Output({"type": "url-state", "page": PAGE}, "data"),
    Output("neurons-error", "children"),
    Output("neurons-error", "is_open"),
    Input("neurons-model", "value"),
    Input("neurons-layer", "value"),
    Input("neurons-neuron", "value"),
    Input("neurons-whole", "value"),
)
def show_neuron(model: str, layer: Any, neuron: Any, whole: bool) -> tuple:
    from analysis import neurons_views as views

    state = {"model": model, "layer": layer, "neuron": neuron, "whole": 1 if whole else None}
    blank = ("", "", "", "", empty_figure(), empty_figure(), "", "", state)
    if layer in (None, "") or neuron in (None, ""):
        if not any(m["status"] == "complete" for m in list_indexes(get_runtime(), model)):
            message = (f"No neuron index for {model} yet: build one in the Index tab "
                       f"(or `make index ARGS='--model {model}'`).")
        else:
            message = "Pick a layer and a neuron (or a top-ranked neuron)."
        return (*blank[:-1], state, message, True)
    try:
        record = views.neuron_record(model, layer, neuron, n_snippets=None)
        scale = max(abs(record["max_act"]), 1e-6)
        snippets = record["snippets"]
        if whole:
            snippets = views.whole_rows(model, layer, int(neuron))
        sim_cols = [("cosine", "cosine"), ("jaccard", "Jaccard")]
        return (
            _unit_label(layer, neuron),
            stats_line(record),
            top_tokens_badges(record["top_tokens"]),
            snippets_list(snippets, scale, "neurons-snippet-list"),
            quantile_figure(record["quantiles"]),
            logit_figure(record["logit_effects"]),
            unit_table(record["similar"], model, sim_cols, "neurons-similar-table"),
            record["explanation"]["summary"],
            state, "", False,
        )
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return (*blank, friendly(exc), True)


@callback(
    Output("neurons-graph", "figure"),
    Output("neurons-patterns", "children"),
    Input("neurons-model", "value"),
    Input("neurons-layer", "value"),
    Input("neurons-neuron", "value"),
)
def show_graph(model: str, layer: Any, neuron: Any) -> tuple:
    from analysis import neurons_views as views
    from analysis.neurons import open_index

    if layer in (None, "") or neuron in (None, ""):
        return empty_figure(), ""
    try:
        index = open_index(model)
        data = views.graph_for(index, views.parse_layer(layer), int(neuron), get_runtime())
        return graph_figure(data), patterns_list(data["patterns"])
    except Exception as exc:  # noqa: BLE001
        return empty_figure(friendly(exc)[:120]), ""


@callback(
    Output("neurons-llm", "children"),
    Input("neurons-llm-button", "n_clicks"),
    State("neurons-model", "value"),
    State("neurons-layer", "value"),
    State("neurons-neuron", "value"),
    prevent_initial_call=True,
)
def ask_llm(_clicks: int, model: str, layer: Any, neuron: Any) -> Any:
    from analysis import neurons_views as views

    try:
        record = views.neuron_record(model, layer, neuron, n_similar=0, llm=True)
        text = record["explanation"]["llm"]
        return text or "No OpenAI-compatible endpoint is configured (OPENAI_BASE_URL in config.py)."
    except Exception as exc:  # noqa: BLE001
        return html.Span(friendly(exc), className="text-danger")


@callback(
    Output("neurons-top", "options"),
    Input("neurons-model", "value"),
    Input("neurons-layer", "value"),
    Input("neurons-sort", "value"),
)
def ranked_options(model: str, layer: Any, sort: str) -> list[dict[str, Any]]:
    from analysis import neurons_views as views

    if layer in (None, ""):
        return []
    try:
        ranked = views.layer_ranking(model, layer, sort or "max", limit=100)["neurons"]
    except Exception:  # noqa: BLE001 - the main view shows the error
        return []
    return [{"label": f"#{r['unit']}  max {r['max_act']:.2f}  range {r['range']:.2f}  "
                      + " ".join(repr(t) for t in r["top_tokens"]), "value": r["unit"]} for r in ranked]


@callback(Output("neurons-neuron", "value"), Input("neurons-top", "value"), prevent_initial_call=True)
def jump_to_top(unit: Any) -> Any:
    return no_update if unit is None else int(unit)


@callback(
    Output("neurons-search-results", "children"),
    Input("neurons-search-button", "n_clicks"),
    Input("neurons-search", "n_submit"),
    State("neurons-search", "value"),
    State("neurons-model", "value"),
    prevent_initial_call=True,
)
def search(_clicks: int, _submit: int, token: str, model: str) -> Any:
    from analysis import neurons_views as views

    try:
        found = views.search_token(model, token or "", limit=100)
    except Exception as exc:  # noqa: BLE001
        return html.Div(friendly(exc), className="text-danger small")
    if not found["results"]:
        return html.Div(f"No neuron has {found['token_strings']} among its top tokens.", className="text-muted small")
    cols = [("token", "token"), ("count", "of top positions"), ("max_act", "best activation")]
    return html.Div([html.Div(f"token ids {found['token_ids']}", className="text-muted small mb-1"),
                     unit_table(found["results"], model, cols, "neurons-search-table")])


@callback(
    Output("neurons-compare", "children"),
    Output("neurons-compare-figure", "figure"),
    Input("neurons-model", "value"),
    Input("neurons-layer", "value"),
    Input("neurons-neuron", "value"),
    Input("neurons-layer-b", "value"),
    Input("neurons-neuron-b", "value"),
)
def compare(model: str, layer: Any, neuron: Any, layer_b: Any, neuron_b: Any) -> tuple:
    from analysis import neurons_views as views

    if None in (layer, neuron, layer_b, neuron_b) or "" in (layer, neuron, layer_b, neuron_b):
        return html.Div("Pick a second neuron to compare with.", className="text-muted small"), empty_figure()
    try:
        pair = views.compare(model, (layer, neuron), (layer_b, neuron_b))
        recs = [views.neuron_record(model, layer, neuron, n_snippets=8, n_similar=0),
                views.neuron_record(model, layer_b, neuron_b, n_snippets=8, n_similar=0)]
    except Exception as exc:  # noqa: BLE001
        return html.Div(friendly(exc), className="text-danger small"), empty_figure()
    from dash import dcc

    cols = []
    for rec, (lay, unit) in zip(recs, [(layer, neuron), (layer_b, neuron_b)], strict=True):
        cols.append(html.Div([html.H6(_unit_label(lay, unit)), stats_line(rec), top_tokens_badges(rec["top_tokens"]),
                              dcc.Markdown(rec["explanation"]["summary"], className="small"),
                              snippets_list(rec["snippets"], max(abs(rec["max_act"]), 1e-6))], className="col-md-6"))
    head = html.Div(f"cosine {pair['cosine']:.3f} · Jaccard {pair['jaccard']:.3f} (both symmetric)",
                    className="fw-semibold mb-2", id="neurons-compare-sims")
    fig = compare_figure(pair["sample_a"], pair["sample_b"], _unit_label(layer, neuron), _unit_label(layer_b, neuron_b))
    return html.Div([head, html.Div(cols, className="row")]), fig


@callback(
    Output("neurons-build-status", "children"),
    Input("neurons-build-start", "n_clicks"),
    State("neurons-model", "value"),
    State("neurons-build-corpus", "value"),
    State("neurons-build-tokens", "value"),
    State("neurons-build-layers", "value"),
    background=True,
    progress=[Output("neurons-build-progress", "value"), Output("neurons-build-progress", "label")],
    cancel=[Input("neurons-build-cancel", "n_clicks")],
    running=[(Output("neurons-build-start", "disabled"), True, False),
             (Output("neurons-build-cancel", "disabled"), False, True)],
    prevent_initial_call=True,
)
def build(set_progress: Any, _clicks: int, model: str, corpus: str, tokens: Any, layers: str) -> Any:
    """The page's background build (same function as ``make index``); a cancelled build resumes later."""
    from analysis.neurons import _parse_layers, build_index
    from analysis.neurons_build import IndexConfig

    try:
        cfg = IndexConfig(model_id=model, corpus=corpus or "training", n_tokens=int(tokens or 0),
                          layers=_parse_layers(layers))

        def report(p: Any) -> None:
            eta = f", ETA {p.eta_s:,.0f} s" if p.eta_s is not None else ""
            set_progress((round(100 * p.fraction), f"{p.done}/{p.total} batches · {p.tokens_per_s:,.0f} tok/s{eta}"))

        path = build_index(cfg, get_runtime(), progress=report, checkpoint_every_s=20.0)
        return f"Index ready: {path.name}"
    except Exception as exc:  # noqa: BLE001
        return f"Build failed: {friendly(exc)}"
