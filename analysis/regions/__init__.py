"""Regions page (NRAG, LLM-MRI's job): which activation regions does each category of text light up, and
how do they connect across layers? Public API: datasets, the extraction (through ``capture``), reductions,
graphs, metrics, exports."""

from analysis.regions.data import (
    LabeledDataset,
    builtin_dataset,
    load_hub_dataset,
    load_saved_dataset,
    parse_table_bytes,
    parse_upload,
)
from analysis.regions.extract import POOLING_LABELS, POOLINGS, Activations, extract, pool, state_labels, state_sites
from analysis.regions.graph import correlation_graph, graph_payload, grid_graph, weight_attr
from analysis.regions.metrics import GraphMetrics, degree_by_layer, evaluate_classifier, graph_metrics
from analysis.regions.pipeline import (
    Reduced,
    activations_key,
    best_layer,
    build_graph,
    compute_activations,
    dataset_key,
    dataset_key_from_summary,
    graph_json,
    graphml_bytes,
    load_activations,
    load_dataset,
    metrics_csv,
    reduced,
    separation_by_layer,
    store_dataset,
)
from analysis.regions.reduce import MAX_COMPONENTS, MAX_GRID, METHODS, ReductionParams, reduce_all, reduce_layer

__all__ = [
    "MAX_COMPONENTS", "MAX_GRID", "METHODS", "POOLINGS", "POOLING_LABELS", "Activations", "GraphMetrics",
    "LabeledDataset", "Reduced", "ReductionParams", "activations_key", "best_layer", "build_graph", "builtin_dataset",
    "compute_activations", "correlation_graph", "dataset_key", "dataset_key_from_summary", "degree_by_layer",
    "evaluate_classifier", "extract", "graph_json", "graph_metrics", "graph_payload", "graphml_bytes", "grid_graph",
    "load_activations", "load_dataset", "load_hub_dataset", "load_saved_dataset", "metrics_csv", "parse_table_bytes",
    "parse_upload", "pool", "reduce_all", "reduce_layer", "reduced", "separation_by_layer", "state_labels",
    "state_sites", "store_dataset", "weight_attr",
]
