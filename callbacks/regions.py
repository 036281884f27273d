"""Regions glue: dataset loading, the background extraction job, reduction, heatmaps, graph, metrics,
classifier evaluation, downloads. Every view after extraction reads disk-cached products: changing the
layer, categories, threshold or reduction never runs the model again."""

from __future__ import annotations

import time
from typing import Any

from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from analysis import regions as nrag
from analysis import regions_data as rd
from analysis.regions_extract import Cancelled
from analysis.regions_graph import graph_payload
from analysis.regions_metrics import degree_by_layer, evaluate_classifier, graph_metrics
from analysis.regions_reduce import ReductionParams
from analysis.runtime import get_runtime
from callbacks.common import friendly
from components import regions_controls as rc
from components import regions_figures as rf
from components.figures import empty_figure

P = "regions"
SHOW, HIDE = {}, {"display": "none"}


@callback(Output(f"{P}-builtin-box", "style"), Output(f"{P}-upload-box", "style"), Output(f"{P}-saved-box", "style"),
          Output(f"{P}-hub-box", "style"), Input(f"{P}-source", "value"))
def toggle_source(source: str) -> tuple[dict, ...]:
    return tuple(SHOW if source == s else HIDE for s in ("builtin", "upload", "saved", "hub"))


def load_dataset(source: str, n_per_label: Any, contents: str | None, filename: str | None, saved: str | None,
                 hub: str | None, split: str | None) -> dict[str, Any]:
    """Load + validate the chosen dataset, store it on disk; the summary (with its key) for the page."""
    runtime = get_runtime()
    s = runtime.settings
    if source == "upload":
        if not contents:
            raise rd.InputError("Choose a .csv or .jsonl file with 'text' and 'label' columns first.")
        ds = rd.parse_upload(contents, filename or "upload.csv", s.max_upload_bytes, s.max_dataset_rows)
    elif source == "saved":
        ds = rd.load_saved_dataset(saved or "", s.max_dataset_rows)
    elif source == "hub":
        ds = rd.load_hub_dataset(hub or "", s.max_dataset_rows, split=split or "train")
    else:
        try:
            n = int(n_per_label)
        except (TypeError, ValueError) as exc:
            raise rd.InputError("Texts per label must be a whole number.") from exc
        ds = rd.builtin_dataset(runtime.samples, n, s.max_dataset_rows)
    nrag.store_dataset(runtime, ds)
    return ds.summary()


@callback(Output(f"{P}-dataset", "data"), Output(f"{P}-dataset-info", "children"), Output(f"{P}-error", "children"),
          Output(f"{P}-error", "is_open"),
          Input(f"{P}-load", "n_clicks"), Input(f"{P}-upload", "contents"),
          State(f"{P}-source", "value"), State(f"{P}-n", "value"), State(f"{P}-upload", "filename"),
          State(f"{P}-saved", "value"), State(f"{P}-hub", "value"), State(f"{P}-split", "value"))
def on_load(_clicks: Any, contents: str | None, source: str, n: Any, filename: str | None, saved: str | None,
            hub: str | None, split: str | None) -> tuple:
    if ctx.triggered_id == f"{P}-upload":
        source = "upload"
    elif ctx.triggered_id is None and source != "builtin":
        return no_update, no_update, no_update, no_update
    try:
        summary = load_dataset(source, n, contents, filename, saved, hub, split)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the page
        return None, html.Span("No dataset loaded.", className="text-muted"), friendly(exc), True
    return summary, rc.dataset_info(summary), None, False


def extraction_job(set_progress: Any, dataset: dict | None, model: str, pooling: str) -> dict[str, Any]:
    """The background job (also callable directly): pooled activations, cached on disk."""
    if not dataset:
        raise rd.InputError("Load a dataset first.")
    runtime = get_runtime()
    ds = nrag.load_dataset(runtime, nrag.dataset_key_from_summary(dataset))
    start = time.perf_counter()
    set_progress((1, f"Loading {model}…"))

    def progress(done: int, total: int) -> None:
        set_progress((max(1, int(100 * done / total)), f"{done:,} / {total:,} texts · {time.perf_counter() - start:.0f} s"))

    key, acts = nrag.compute_activations(runtime, model, ds, pooling, progress)
    limit = acts.max_tokens or runtime.settings.max_tokens
    note = f" · {acts.truncated} text(s) cut at the {limit}-token limit" if acts.truncated else ""
    set_progress((100, f"{len(ds):,} texts × {acts.n_layers} hidden states in {time.perf_counter() - start:.1f} s{note}"))
    return {"acts_key": key, "dataset": dataset["key"], "model": model, "pooling": pooling, "n_layers": acts.n_layers,
            "classes": list(ds.classes)}


@callback(Output(f"{P}-acts", "data"), Output(f"{P}-job-error", "children"), Output(f"{P}-job-error", "is_open"),
          Input(f"{P}-run", "n_clicks"),
          State(f"{P}-dataset", "data"), State(f"{P}-model", "value"), State(f"{P}-pooling", "value"),
          background=True,
          progress=[Output(f"{P}-progress", "value"), Output(f"{P}-progress-text", "children")],
          cancel=[Input(f"{P}-cancel", "n_clicks")],
          running=[(Output(f"{P}-run", "disabled"), True, False), (Output(f"{P}-cancel", "disabled"), False, True)],
          prevent_initial_call=True)
def run_extraction(set_progress: Any, _clicks: Any, dataset: dict | None, model: str, pooling: str) -> tuple:
    try:
        return extraction_job(lambda v: set_progress(v), dataset, model, pooling), None, False
    except Cancelled:
        return no_update, "Extraction cancelled.", True
    except Exception as exc:  # noqa: BLE001
        return no_update, friendly(exc), True


@callback(Output(f"{P}-pooling-note", "children"), Input(f"{P}-model", "value"), Input(f"{P}-pooling", "value"))
def pooling_note(model: str, pooling: str) -> str:
    if pooling == "first" and model and "minilm" not in model and "bert" not in model.lower():
        return ("First-token pooling on a decoder gives every text the same vector (the first token sees only "
                "itself): pick last or mean.")
    return ""


def _params(method: str, k: Any, grid: Any, seed: Any) -> ReductionParams:
    try:
        return ReductionParams(method or "pca", int(k), int(grid), None if seed in (None, "") else int(seed))
    except (TypeError, ValueError) as exc:
        raise rd.InputError("Components, grid size and random state must be whole numbers.") from exc


def _view(red_store: dict) -> tuple[rd.LabeledDataset, nrag.Reduced]:
    runtime = get_runtime()
    ds = nrag.load_dataset(runtime, nrag.dataset_key_from_summary({"key": red_store["dataset"]}))
    params = ReductionParams(**red_store["params"])
    return ds, nrag.reduced(runtime, red_store["acts_key"], params, ds.label_ids, len(ds.classes))


@callback(Output(f"{P}-reduced", "data"), Output(f"{P}-layer", "max"), Output(f"{P}-layer", "marks"),
          Output(f"{P}-cats", "options"), Output(f"{P}-cats", "value"), Output(f"{P}-graph-cats", "options"),
          Output(f"{P}-graph-cats", "value"), Output(f"{P}-view-error", "children"), Output(f"{P}-view-error", "is_open"),
          Input(f"{P}-acts", "data"), Input(f"{P}-method", "value"), Input(f"{P}-k", "value"), Input(f"{P}-grid", "value"),
          Input(f"{P}-seed", "value"), State(f"{P}-cats", "value"), State(f"{P}-graph-cats", "value"))
def on_reduce(acts: dict | None, method: str, k: Any, grid: Any, seed: Any, cats: list | None,
              graph_cats: list | None) -> tuple:
    if not acts:
        return (no_update,) * 7 + (None, False)
    try:
        params = _params(method, k, grid, seed)
        store = {"acts_key": acts["acts_key"], "dataset": acts["dataset"], "params": params.as_dict(),
                 "n_layers": acts["n_layers"], "classes": acts["classes"]}
        _view(store)  # computes (or loads) the reduction now, so errors show here
    except Exception as exc:  # noqa: BLE001
        return (no_update,) * 7 + (friendly(exc), True)
    classes = acts["classes"]
    options = [{"label": c, "value": c} for c in classes]
    cats = [c for c in (cats or []) if c in classes] or list(classes)
    graph_cats = [c for c in (graph_cats or []) if c in classes][:2] or list(classes[:2])
    n = acts["n_layers"]
    return store, n - 1, {i: str(i) for i in range(n)}, options, cats, options, graph_cats, None, False


@callback(Output(f"{P}-heatmap", "figure"), Output(f"{P}-scatter-box", "style"), Output(f"{P}-scatter-graph", "figure"),
          Input(f"{P}-reduced", "data"), Input(f"{P}-layer", "value"), Input(f"{P}-cats", "value"),
          Input(f"{P}-scatter", "value"))
def on_heatmap(red_store: dict | None, layer: int, cats: list | None, show_scatter: bool) -> tuple:
    if not red_store:
        return empty_figure("Load a dataset and run the extraction."), HIDE, no_update
    try:
        ds, red = _view(red_store)
        layer = min(int(layer or 0), red.counts.shape[0] - 1)
        cats = [c for c in (cats or []) if c in ds.classes]
        grids = [red.counts[layer, ds.classes.index(c)] for c in cats]
        heat = rf.heatmap_figure(grids, cats, layer, red.counts.shape[0])
        if not show_scatter:
            return heat, HIDE, no_update
        hover = [f"{lab}: {text[:80]!r}" for text, lab in zip(ds.texts, ds.labels, strict=True)]
        scatter = rf.scatter_figure(red.coords[layer], ds.label_ids, ds.classes, cats, layer, red.params.grid, hover)
        return heat, SHOW, scatter
    except Exception as exc:  # noqa: BLE001
        return empty_figure(friendly(exc)), HIDE, no_update


def current_graph(red_store: dict, cats: list | None, threshold: Any) -> tuple[rd.LabeledDataset, Any]:
    ds, red = _view(red_store)
    try:
        thr = float(threshold) if threshold not in (None, "") else 0.3
    except (TypeError, ValueError) as exc:
        raise rd.InputError("The threshold must be a number in [-1, 1).") from exc
    return ds, nrag.build_graph(red, ds, cats or [], thr)


@callback(Output(f"{P}-graph", "figure"), Output(f"{P}-metrics", "children"), Output(f"{P}-degree", "figure"),
          Input(f"{P}-reduced", "data"), Input(f"{P}-graph-cats", "value"), Input(f"{P}-threshold", "value"))
def on_graph(red_store: dict | None, cats: list | None, threshold: Any) -> tuple:
    if not red_store:
        blank = empty_figure("The graph appears after the extraction.")
        return blank, None, empty_figure()
    try:
        ds, g = current_graph(red_store, cats, threshold)
    except Exception as exc:  # noqa: BLE001
        return empty_figure(friendly(exc)), None, empty_figure()
    fig = rf.graph_figure(graph_payload(g), {c: i for i, c in enumerate(ds.classes)})
    return fig, rc.metrics_table(graph_metrics(g).as_dict()), rf.layer_degree_figure(degree_by_layer(g))


@callback(Output(f"{P}-eval", "children"), Input(f"{P}-eval-run", "n_clicks"), State(f"{P}-reduced", "data"),
          prevent_initial_call=True)
def on_evaluate(_clicks: Any, red_store: dict | None) -> Any:
    if not red_store:
        return html.Div("Run the extraction first.", className="text-danger small")
    try:
        ds, red = _view(red_store)
        acts = nrag.load_activations(get_runtime(), red_store["acts_key"])
        report = evaluate_classifier(red.coords, acts.pooled[-1], ds.label_ids)
    except Exception as exc:  # noqa: BLE001
        return html.Div(friendly(exc), className="text-danger small")
    rows = report.rows()
    from components.figures import graph

    return html.Div([rc.classifier_table(rows, report.n_reduced_features, report.n_full_features),
                     graph(rf.classifier_figure(rows), f"{P}-eval-graph", "regions-classifier")])


@callback(Output(f"{P}-download", "data"), Input(f"{P}-dl-graphml", "n_clicks"), Input(f"{P}-dl-json", "n_clicks"),
          Input(f"{P}-dl-csv", "n_clicks"), State(f"{P}-reduced", "data"), State(f"{P}-graph-cats", "value"),
          State(f"{P}-threshold", "value"), State(f"{P}-acts", "data"), prevent_initial_call=True)
def on_download(_a: Any, _b: Any, _c: Any, red_store: dict | None, cats: list | None, threshold: Any,
                acts: dict | None) -> Any:
    if not red_store:
        return no_update
    try:
        _, g = current_graph(red_store, cats, threshold)
    except Exception:  # noqa: BLE001 - the graph panel already shows the message
        return no_update
    stem = f"nrag-{'-'.join(cats or [])}"
    if ctx.triggered_id == f"{P}-dl-graphml":
        return dcc.send_bytes(nrag.graphml_bytes(g), f"{stem}.graphml")
    if ctx.triggered_id == f"{P}-dl-json":
        return dcc.send_string(nrag.graph_json(g), f"{stem}.json")
    extra = {"model": (acts or {}).get("model"), "pooling": (acts or {}).get("pooling"),
             **{f"reduction_{k}": v for k, v in red_store["params"].items()}, "categories": ",".join(cats or [])}
    return dcc.send_string(nrag.metrics_csv(g, extra), f"{stem}-metrics.csv")


@callback(Output({"type": "url-state", "page": P}, "data"),
          Input(f"{P}-model", "value"), Input(f"{P}-pooling", "value"), Input(f"{P}-method", "value"),
          Input(f"{P}-k", "value"), Input(f"{P}-grid", "value"), Input(f"{P}-layer", "value"), Input(f"{P}-n", "value"),
          Input(f"{P}-source", "value"))
def url_state(model: str, pooling: str, method: str, k: Any, grid: Any, layer: Any, n: Any, source: str) -> dict:
    return {"model": model, "pooling": pooling, "method": method, "k": k, "grid": grid, "layer": layer, "n": n,
            "source": source}
