"""Regions glue: dataset loading, the extraction job, reduction, heatmaps, graph, metrics, classifier
evaluation, downloads. Every view after extraction reads disk-cached products: changing the layer,
categories, threshold or reduction never runs the model again."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from analysis.edits import edits_key
from analysis.errors import InputError
from analysis.params import parse_choice, parse_float, parse_int
from analysis.regions import (
    POOLINGS,
    LabeledDataset,
    Reduced,
    ReductionParams,
    best_layer,
    build_graph,
    builtin_dataset,
    compute_activations,
    dataset_key_from_summary,
    degree_by_layer,
    evaluate_classifier,
    graph_json,
    graph_metrics,
    graph_payload,
    graphml_bytes,
    load_activations,
    load_dataset,
    load_hub_dataset,
    load_saved_dataset,
    metrics_csv,
    parse_upload,
    reduced,
    state_labels,
    store_dataset,
)
from analysis.runtime import get_runtime
from callbacks.common import page_callback, register_job
from callbacks.edits import page_edits
from callbacks.shell import register_model_loading
from components import regions_controls as controls
from components import regions_figures as figures
from components.figures import empty_figure, graph

P = "regions"
SHOW, HIDE = {}, {"display": "none"}
DEEP_MODEL_LAYERS = 12  # from this many states on, the 2-D graph is drawn with a minimum edge weight
register_model_loading(P)


@callback(Output(f"{P}-builtin-box", "style"), Output(f"{P}-upload-box", "style"), Output(f"{P}-saved-box", "style"),
          Output(f"{P}-hub-box", "style"), Input(f"{P}-source", "value"))
def toggle_source(source: str) -> tuple[dict, ...]:
    return tuple(SHOW if source == s else HIDE for s in ("builtin", "upload", "saved", "hub"))


# ---- dataset --------------------------------------------------------------------------------------

def load_dataset_summary(source: str, n_per_label: Any, contents: str | None, filename: str | None,
                         saved: str | None, hub: str | None, split: str | None) -> dict[str, Any]:
    """Load + validate the chosen dataset, store it on disk; the summary (with its key) for the page."""
    runtime = get_runtime()
    s = runtime.settings
    source = parse_choice(source, "Dataset source", ("builtin", "upload", "saved", "hub"))
    if source == "upload":
        if not contents:
            raise InputError("Choose a .csv or .jsonl file with 'text' and 'label' columns first.")
        ds = parse_upload(contents, filename or "upload.csv", s.max_upload_bytes, s.max_dataset_rows)
    elif source == "saved":
        ds = load_saved_dataset(saved or "", s.max_dataset_rows, settings=s)
    elif source == "hub":
        ds = load_hub_dataset(hub or "", s.max_dataset_rows, split=split or "train")
    else:
        ds = builtin_dataset(runtime.samples, n_per_label, s.max_dataset_rows)
    store_dataset(runtime, ds)
    return ds.summary()


@page_callback(P, Output(f"{P}-dataset", "data"), Output(f"{P}-dataset-info", "children"),
               Output(f"{P}-acts", "data", allow_duplicate=True), Output(f"{P}-reduced", "data", allow_duplicate=True),
               Input(f"{P}-load", "n_clicks"), Input(f"{P}-upload", "contents"),
               State(f"{P}-source", "value"), State(f"{P}-n", "value"), State(f"{P}-upload", "filename"),
               State(f"{P}-saved", "value"), State(f"{P}-hub", "value"), State(f"{P}-split", "value"),
               prevent_initial_call="initial_duplicate")
def on_load(_clicks: Any, contents: str | None, source: str, n: Any, filename: str | None, saved: str | None,
            hub: str | None, split: str | None) -> tuple:
    """A new dataset replaces the old one and clears its activations and views; a failed load leaves the
    loaded dataset (and what the page shows of it) as it was, with the reason in the alert."""
    if ctx.triggered_id == f"{P}-upload":
        source = "upload"
    elif ctx.triggered_id is None and source != "builtin":
        return no_update, no_update, no_update, no_update
    summary = load_dataset_summary(source, n, contents, filename, saved, hub, split)
    return summary, controls.dataset_info(summary), None, None


# ---- extraction (a server job) -----------------------------------------------------------------

def extraction_job(dataset: dict | None, model: str, pooling: str, edits_store: dict | None = None,
                   *_triggers: Any) -> tuple[str, str, Any] | None:
    """(key, title, work) of the extraction of the loaded dataset: pooled states of every layer, on disk; with
    the shared edit list on, the edited model's states (the NRAG of the edited model)."""
    if not dataset:
        return None
    runtime = get_runtime()
    pooling = parse_choice(pooling, "Pooling", POOLINGS)
    ds = load_dataset(runtime, dataset_key_from_summary(dataset))
    causal = runtime.model(model).info.is_causal  # an encoder (LLM-MRI's default) takes no edits: clean states
    edits = page_edits(runtime, model, edits_store) if causal else []
    label = edits_key(edits)

    def work(job: Any) -> dict[str, Any]:
        key, acts = compute_activations(runtime, model, ds, pooling, job, edits=edits)
        return {"acts_key": key, "dataset": dataset["key"], "model": model, "pooling": pooling,
                "n_layers": acts.n_layers, "classes": list(ds.classes), "truncated": acts.truncated,
                "max_tokens": acts.max_tokens, "edits": label.split("#")[0]}

    title = f"Extracting {len(ds):,} texts with {model}" + (f" (edited: {label.split('#')[0]})" if edits else "")
    return f"regions-extract:{model}:{pooling}:{dataset['key']}:{label}", title, work


def run_extraction(dataset: dict | None, model: str, pooling: str) -> dict[str, Any]:
    """The extraction in the calling thread (the figure CLI and tests)."""
    made = extraction_job(dataset, model, pooling)
    if made is None:
        raise InputError("Load a dataset first.")
    from analysis.jobs import quiet_job

    return made[2](quiet_job())


def describe_extraction(result: dict[str, Any]) -> str:
    note = f"; {result['truncated']} text(s) cut at the {result['max_tokens']}-token limit" if result["truncated"] else ""
    edited = f" The edited model's states (edits: {result['edits']})." if result.get("edits") else ""
    return f"{result['n_layers']} residual states of every text extracted (cached on disk){note}.{edited}"


register_job(P, f"{P}-extract", [State(f"{P}-dataset", "data"), State(f"{P}-model", "value"),
                                 State(f"{P}-pooling", "value"), State("shell-edits-store", "data")],
             extraction_job, describe_extraction,
             triggers=[Input(f"{P}-dataset", "data"), Input(f"{P}-model", "value"), Input(f"{P}-pooling", "value"),
                       Input("shell-edits-store", "data")])


@page_callback(P, Output(f"{P}-acts", "data"), Input(f"{P}-extract-done", "data"), prevent_initial_call=True)
def on_extracted(done: dict | None) -> Any:
    status = get_runtime().jobs.status(done["key"]) if done else None
    if status is None or status.state != "done":
        return no_update
    return status.result


def is_encoder_name(model: str | None) -> bool:
    """Whether a model id names a BERT-style encoder (no model load: the pickers' own hint)."""
    return bool(model) and ("minilm" in model.lower() or "bert" in model.lower())


def default_pooling(model: str | None) -> str:
    """LLM-MRI's first-token (CLS) pooling for encoders, the last real token for decoders."""
    return "first" if is_encoder_name(model) or not model else "last"


@callback(Output(f"{P}-pooling", "value"), Input(f"{P}-model", "value"), State(f"{P}-pooling", "value"),
          prevent_initial_call=True)
def pooling_for_model(model: str, pooling: str) -> Any:
    """A model change switches the pooling to that kind of model's default (a link's own choice is kept)."""
    chosen = default_pooling(model)
    return chosen if chosen != pooling else no_update


@callback(Output(f"{P}-pooling-note", "children"), Input(f"{P}-model", "value"), Input(f"{P}-pooling", "value"))
def pooling_note(model: str, pooling: str) -> str:
    if pooling == "first" and model and not is_encoder_name(model):
        return ("First-token pooling on a decoder gives every text the same vector (the first token sees only "
                "itself): pick last or mean.")
    return ""


# ---- reduction and views ------------------------------------------------------------------------

def _view(red_store: dict) -> tuple[LabeledDataset, Reduced]:
    runtime = get_runtime()
    ds = load_dataset(runtime, dataset_key_from_summary({"key": red_store["dataset"]}))
    params = ReductionParams(**red_store["params"])
    return ds, reduced(runtime, red_store["acts_key"], params, ds.label_ids, len(ds.classes), red_store.get("model", ""))


def reduce_view(acts: dict, method: str, k: Any, grid: Any, seed: Any, cats: list | None,
                graph_cats: list | None, layer: Any = None) -> dict[str, Any]:
    """The reduction store and the pickers that follow from it (layer slider, categories)."""
    params = ReductionParams.parse(method, k, grid, seed)
    store = {"acts_key": acts["acts_key"], "dataset": acts["dataset"], "params": params.as_dict(),
             "n_layers": acts["n_layers"], "classes": acts["classes"], "model": acts.get("model", "")}
    ds, red = _view(store)  # computes (or loads) the reduction now, so errors show here
    classes = acts["classes"]
    n = acts["n_layers"]
    labels = state_labels(n - 1)
    chosen = parse_int(layer, "Layer", 0, n - 1, default=None) if layer not in (None, "") else None
    return {"store": store, "max": n - 1, "marks": controls.layer_marks(labels),
            "options": [{"label": c, "value": c} for c in classes],
            "cats": [c for c in (cats or []) if c in classes] or list(classes),
            "graph_cats": [c for c in (graph_cats or []) if c in classes][:2] or list(classes[:2]),
            "layer": chosen if chosen is not None else best_layer(red, ds.label_ids)}


@page_callback(P, Output(f"{P}-reduced", "data"), Output(f"{P}-layer", "max"), Output(f"{P}-layer", "marks"),
               Output(f"{P}-layer", "value"), Output(f"{P}-cats", "options"), Output(f"{P}-cats", "value"),
               Output(f"{P}-graph-cats", "options"), Output(f"{P}-graph-cats", "value"),
               Input(f"{P}-acts", "data"), Input(f"{P}-method", "value"), Input(f"{P}-k", "value"),
               Input(f"{P}-grid", "value"), Input(f"{P}-seed", "value"), State(f"{P}-cats", "value"),
               State(f"{P}-graph-cats", "value"), State(f"{P}-url-layer", "data"), prevent_initial_call=True)
def on_reduce(acts: dict | None, method: str, k: Any, grid: Any, seed: Any, cats: list | None,
              graph_cats: list | None, url_layer: Any) -> tuple:
    if not acts:
        return None, no_update, no_update, no_update, [], [], [], []
    layer = url_layer if ctx.triggered_id == f"{P}-acts" and url_layer is not None else None
    v = reduce_view(acts, method, k, grid, seed, cats, graph_cats, layer)
    return (v["store"], v["max"], v["marks"], v["layer"], v["options"], v["cats"], v["options"], v["graph_cats"])


def heatmap_view(red_store: dict, layer: Any, cats: list | None, show_scatter: bool) -> tuple:
    ds, red = _view(red_store)
    n = red.counts.shape[0]
    layer = parse_int(layer, "Layer", 0, n - 1, default=0)
    cats = [c for c in (cats or []) if c in ds.classes]
    grids = [red.counts[layer, ds.classes.index(c)] for c in cats]
    labels = state_labels(n - 1)
    heat = figures.heatmap_figure(grids, cats, layer, n, labels)
    if not show_scatter:
        return heat, HIDE, no_update
    hover = [f"{lab}: {text[:80]!r}" for text, lab in zip(ds.texts, ds.labels, strict=True)]
    scatter = figures.scatter_figure(red.coords[layer], ds.label_ids, ds.classes, cats, layer, red.params.grid, hover)
    return heat, SHOW, scatter


@page_callback(P, Output(f"{P}-heatmap", "figure"), Output(f"{P}-scatter-box", "style"),
               Output(f"{P}-scatter-graph", "figure"), Output(f"{P}-layer-note", "children"),
               Input(f"{P}-reduced", "data"), Input(f"{P}-layer", "value"), Input(f"{P}-cats", "value"),
               Input(f"{P}-scatter", "value"))
def on_heatmap(red_store: dict | None, layer: int, cats: list | None, show_scatter: bool) -> tuple:
    if not red_store:
        return empty_figure("Load a dataset and run the extraction."), HIDE, no_update, ""
    heat, style, scatter = heatmap_view(red_store, layer, cats, show_scatter)
    labels = state_labels(red_store["n_layers"] - 1)
    name = labels[min(int(layer or 0), len(labels) - 1)]
    return heat, style, scatter, f"State {name}: the residual stream as the Lens page names it (embed = block 0's input)."


def min_edge_weight(value: Any, red_store: dict) -> float:
    """The drawing threshold: as typed, else 2 texts for deep models' 2-D graphs (1 otherwise)."""
    typed = parse_float(value, "Min. edge weight", 0, None, default=None, field=f"{P}-min-weight")
    if typed is not None:
        return typed
    deep = red_store["n_layers"] >= DEEP_MODEL_LAYERS and red_store["params"]["n_components"] == 2
    return 2.0 if deep else 0.0


def current_graph(red_store: dict, cats: list | None, threshold: Any) -> tuple[LabeledDataset, Any]:
    ds, red = _view(red_store)
    thr = parse_float(threshold, "Spearman threshold", -1, 1, default=0.3, high_open=True, field=f"{P}-threshold")
    return ds, build_graph(red, ds, cats or [], thr)


def graph_view(red_store: dict, cats: list | None, threshold: Any, min_weight: Any = None) -> tuple:
    ds, g = current_graph(red_store, cats, threshold)
    payload = graph_payload(g, min_edge_weight(min_weight, red_store))
    payload["labels"] = state_labels(red_store["n_layers"] - 1)
    fig = figures.graph_figure(payload, {c: i for i, c in enumerate(ds.classes)})
    return fig, controls.metrics_table(graph_metrics(g).as_dict()), figures.layer_degree_figure(degree_by_layer(g))


@page_callback(P, Output(f"{P}-graph", "figure"), Output(f"{P}-metrics", "children"), Output(f"{P}-degree", "figure"),
               Input(f"{P}-reduced", "data"), Input(f"{P}-graph-cats", "value"), Input(f"{P}-threshold", "value"),
               Input(f"{P}-min-weight", "value"))
def on_graph(red_store: dict | None, cats: list | None, threshold: Any, min_weight: Any) -> tuple:
    if not red_store:
        return empty_figure("The graph appears after the extraction."), None, empty_figure()
    return graph_view(red_store, cats, threshold, min_weight)


@page_callback(P, Output(f"{P}-eval", "children"), Input(f"{P}-eval-run", "n_clicks"), State(f"{P}-reduced", "data"),
               prevent_initial_call=True)
def on_evaluate(_clicks: Any, red_store: dict | None) -> Any:
    if not red_store:
        raise InputError("Run the extraction first.")
    ds, red = _view(red_store)
    acts = load_activations(get_runtime(), red_store["acts_key"], red_store.get("model", ""))
    report = evaluate_classifier(red.coords, acts.pooled[-1], ds.label_ids)
    rows = report.rows()
    return html.Div([controls.classifier_table(rows, report.n_reduced_features, report.n_full_features),
                     graph(figures.classifier_figure(rows), f"{P}-eval-graph", "regions-classifier")])


@page_callback(P, Output(f"{P}-download", "data"), Input(f"{P}-dl-graphml", "n_clicks"), Input(f"{P}-dl-json", "n_clicks"),
               Input(f"{P}-dl-csv", "n_clicks"), State(f"{P}-reduced", "data"), State(f"{P}-graph-cats", "value"),
               State(f"{P}-threshold", "value"), State(f"{P}-acts", "data"), prevent_initial_call=True)
def on_download(_a: Any, _b: Any, _c: Any, red_store: dict | None, cats: list | None, threshold: Any,
                acts: dict | None) -> Any:
    if not red_store:
        raise InputError("Nothing to download yet: run the extraction first.")
    _, g = current_graph(red_store, cats, threshold)
    stem = f"nrag-{'-'.join(cats or [])}"
    if ctx.triggered_id == f"{P}-dl-graphml":
        return dcc.send_bytes(graphml_bytes(g), f"{stem}.graphml")
    if ctx.triggered_id == f"{P}-dl-json":
        return dcc.send_string(graph_json(g), f"{stem}.json")
    extra = {"model": (acts or {}).get("model"), "pooling": (acts or {}).get("pooling"),
             **{f"reduction_{k}": v for k, v in red_store["params"].items()}, "categories": ",".join(cats or [])}
    return dcc.send_string(metrics_csv(g, extra), f"{stem}-metrics.csv")


@page_callback(P, Output({"type": "url-state", "page": P}, "data"),
               Input(f"{P}-model", "value"), Input(f"{P}-pooling", "value"), Input(f"{P}-method", "value"),
               Input(f"{P}-k", "value"), Input(f"{P}-grid", "value"), Input(f"{P}-layer", "value"), Input(f"{P}-n", "value"),
               Input(f"{P}-source", "value"))
def url_state(model: str, pooling: str, method: str, k: Any, grid: Any, layer: Any, n: Any, source: str) -> dict:
    return {"model": model, "pooling": pooling, "method": method, "k": k, "grid": grid, "layer": layer, "n": n,
            "source": source}
