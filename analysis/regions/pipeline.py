"""Regions (NRAG): which grid regions of each layer a category of text activates, and how regions
connect across layers -- LLM-MRI's method, cached and batched.

Pipeline: dataset -> pooled hidden states (one forward pass per batch, disk-cached by model,
dataset hash, pooling) -> per-layer reduction (disk-cached) -> grid counts / graphs / metrics.
Changing the layer, category, threshold or view never runs the model again.

CLI (same functions as the page's background job)::

    python -m analysis.regions --builtin 300 --model embedded:all-minilm-l6-v2 --out /tmp/nrag
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from analysis.cache import content_key
from analysis.errors import InputError
from analysis.jobs import Job
from analysis.regions.data import LabeledDataset
from analysis.regions.extract import Activations, extract
from analysis.regions.graph import correlation_graph, graph_payload, grid_graph
from analysis.regions.metrics import degree_by_layer, graph_metrics
from analysis.regions.reduce import ReductionParams, cell_counts, grid_cells, reduce_all
from analysis.runtime import Runtime


def dataset_key(ds: LabeledDataset) -> str:
    return content_key("regions-dataset", ds.content_hash)


def dataset_key_from_summary(summary: dict) -> str:
    """The disk key of a dataset from the page's summary (its content hash)."""
    return content_key("regions-dataset", summary.get("key", ""))


def store_dataset(runtime: Runtime, ds: LabeledDataset) -> str:
    """Put the dataset on disk (the background job reads it there); returns its key."""
    key = dataset_key(ds)
    if key not in runtime.disk:
        runtime.disk.set(key, ds)
    return key


def load_dataset(runtime: Runtime, key: str) -> LabeledDataset:
    ds = runtime.disk.get(key) if key else None
    if ds is None:
        raise InputError("The dataset is no longer in the cache: load it again.")
    return ds


EXTRACTION_VERSION = 2  # 2: states through capture, named as on the Lens page (the last one before the final norm)


def activations_key(model_id: str, ds_hash: str, pooling: str, max_tokens: int, edits: str = "") -> str:
    parts = (model_id, ds_hash, pooling, max_tokens) + ((edits,) if edits else ())
    return content_key("regions-acts", EXTRACTION_VERSION, *parts)


def compute_activations(runtime: Runtime, model_id: str, ds: LabeledDataset, pooling: str,
                        job: Job | None = None, edits: Sequence[Any] = ()) -> tuple[str, Activations]:
    """Pooled residual states of every layer, from the disk cache when this (model, dataset, pooling, edit
    list) was extracted before; otherwise one batched pass with the model loaded once (``edits``: resolved
    :mod:`analysis.edits` records, the edited model's NRAG)."""
    from analysis.edits import capture_edits, edits_key

    key = activations_key(model_id, ds.content_hash, pooling, runtime.settings.max_tokens, edits_key(edits))

    def work() -> Activations:
        lm = runtime.model(model_id, job)
        hooks = capture_edits(lm, edits) if edits else None
        return extract(lm, ds.texts, pooling, max_tokens=runtime.settings.max_tokens, job=job, edits=hooks)

    acts = runtime.disk.get_or_compute(key, work)
    return key, acts


def separation_by_layer(red: Reduced, label_ids: np.ndarray) -> np.ndarray:
    """How well each layer's reduced points separate the categories: the ratio of between-class to
    within-class variance of the coordinates (Fisher's criterion, summed over components)."""
    out = np.zeros(red.coords.shape[0])
    classes = np.unique(label_ids)
    for layer, x in enumerate(red.coords):
        mean = x.mean(0)
        between = sum((label_ids == c).sum() * np.sum((x[label_ids == c].mean(0) - mean) ** 2) for c in classes)
        within = sum(np.sum((x[label_ids == c] - x[label_ids == c].mean(0)) ** 2) for c in classes)
        out[layer] = between / within if within > 0 else 0.0
    return out


def best_layer(red: Reduced, label_ids: np.ndarray) -> int:
    """The layer the page opens on: the one that separates the categories best (not layer 0, where
    every text of a CLS-pooled encoder sits in one cell)."""
    return int(np.argmax(separation_by_layer(red, label_ids)))


def _memo(runtime: Runtime) -> Any:
    """Loaded activations and reductions (keyed by model id, so they go with an evicted model)."""
    return runtime.memo("regions", 6)


def load_activations(runtime: Runtime, key: str, model_id: str = "") -> Activations:
    def load() -> Activations:
        acts = runtime.disk.get(key)
        if acts is None:
            raise InputError("The activations are no longer in the cache: run the extraction again.")
        return acts

    return _memo(runtime).get_or_compute((model_id, "acts", key), load)


@dataclass
class Reduced:
    """One reduction of one extraction: coordinates, grid cells and per-cell counts."""

    acts_key: str
    params: ReductionParams
    coords: np.ndarray  # [L, N, k]
    cells: np.ndarray  # [L, N, 2] (first two components)
    counts: np.ndarray  # [L, C, grid(y), grid(x)]


def reduced(runtime: Runtime, acts_key: str, params: ReductionParams, label_ids: np.ndarray,
            n_classes: int, model_id: str = "") -> Reduced:
    """Reduction of cached activations (disk-cached by acts key + parameters)."""
    key = content_key("regions-reduce", acts_key, params.as_dict())

    def load() -> Reduced:
        acts = load_activations(runtime, acts_key, model_id)
        params.validate(acts.pooled.shape[1], acts.pooled.shape[2])
        coords = runtime.disk.get_or_compute(key, lambda: reduce_all(acts.pooled, params))
        cells = grid_cells(coords, params.grid)
        return Reduced(acts_key, params, coords, cells, cell_counts(cells, label_ids, n_classes, params.grid))

    return _memo(runtime).get_or_compute((model_id, "reduced", key), load)


def build_graph(red: Reduced, ds: LabeledDataset, categories: Sequence[str], threshold: float = 0.3) -> nx.DiGraph:
    """2 components -> grid-region graph; more -> Spearman component graph."""
    if red.params.n_components == 2:
        return grid_graph(red.cells, ds.label_ids, ds.classes, categories, red.params.grid)
    return correlation_graph(red.coords, ds.label_ids, ds.classes, categories, threshold)


# ---- exports -------------------------------------------------------------------------------


def graphml_bytes(g: nx.DiGraph) -> bytes:
    buf = io.BytesIO()
    nx.write_graphml(g, buf)
    return buf.getvalue()


def graph_json(g: nx.DiGraph) -> str:
    data = nx.node_link_data(g, edges="edges")
    return json.dumps(data, indent=1, default=float)


def metrics_csv(g: nx.DiGraph, extra: dict[str, Any] | None = None) -> str:
    """Metrics as CSV: one 'graph' block (metric,value) then the per-layer degree table."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "value"])
    for k, v in {**(extra or {}), **graph_metrics(g).as_dict()}.items():
        w.writerow(["graph", k, v])
    for row in degree_by_layer(g):
        for k, v in row.items():
            if k != "layer":
                w.writerow([f"layer {row['layer']}", k, v])
    return out.getvalue()


# ---- CLI -----------------------------------------------------------------------------------


def _cli_dataset(args: argparse.Namespace, runtime: Runtime) -> LabeledDataset:
    import analysis.regions.data as regions_data

    limit = runtime.settings.max_dataset_rows
    if args.file:
        path = Path(args.file)
        return regions_data.parse_table_bytes(path.read_bytes(), path.name, runtime.settings.max_upload_bytes, limit)
    if args.saved:
        return regions_data.load_saved_dataset(args.saved, limit)
    if args.hub:
        return regions_data.load_hub_dataset(args.hub, limit, split=args.split)
    return regions_data.builtin_dataset(runtime.samples, args.builtin, limit)


def main(argv: Sequence[str] | None = None) -> int:
    from analysis.jobs import tqdm_job
    from analysis.runtime import get_runtime
    from analysis.settings import EMBEDDED_ENCODER

    p = argparse.ArgumentParser(prog="python -m analysis.regions", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--builtin", type=int, default=300, help="texts per label of the built-in set (default 300)")
    src.add_argument("--file", help="CSV/TSV/JSONL/JSON with text,label columns")
    src.add_argument("--saved", help="a Dataset.save_to_disk folder")
    src.add_argument("--hub", help="an HF dataset name (online)")
    p.add_argument("--split", default="train")
    p.add_argument("--model", default=EMBEDDED_ENCODER)
    p.add_argument("--pooling", default="first", choices=["first", "mean", "last"])
    p.add_argument("--method", default="pca", choices=["pca", "svd", "umap"])
    p.add_argument("--components", type=int, default=2)
    p.add_argument("--grid", type=int, default=10)
    p.add_argument("--random-state", type=int, default=42)
    p.add_argument("--categories", default="", help="one or two comma-separated categories (default: first two)")
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--out", default="regions-out")
    args = p.parse_args(argv)
    runtime = get_runtime()
    try:
        ds = _cli_dataset(args, runtime)
        key, acts = compute_activations(runtime, args.model, ds, args.pooling, tqdm_job("regions"))
        params = ReductionParams(args.method, args.components, args.grid, args.random_state)
        red = reduced(runtime, key, params, ds.label_ids, len(ds.classes))
        cats = [c for c in args.categories.split(",") if c] or list(ds.classes[:2])
        g = build_graph(red, ds, cats, args.threshold)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.graphml").write_bytes(graphml_bytes(g))
    (out / "graph.json").write_text(graph_json(g))
    (out / "metrics.csv").write_text(metrics_csv(g, {"model": args.model, "categories": ",".join(cats)}))
    np.savez(out / "counts.npz", counts=red.counts, classes=np.array(ds.classes))
    print(json.dumps({"texts": len(ds), "classes": list(ds.classes), "layers": acts.n_layers,
                      "nodes": g.number_of_nodes(), "edges": g.number_of_edges(), "out": str(out)}))
    return 0


__all__ = ["compute_activations", "reduced", "build_graph", "graph_payload", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
