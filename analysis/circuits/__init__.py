"""Circuits page: which heads, MLPs and earlier tokens produced this prediction?

Public API: ``direct_logit_attribution`` (DLA of a logit or logit difference to the embedding, every head
and every MLP, with a value-weighted source strip), ``contribution_graph`` / ``prune_graph`` (LLM-TT's
information-flow routes, streamed), ``patching_grid`` (activation patching, batched)."""

from analysis.circuits.attribution import (
    TARGET_KINDS,
    Attribution,
    NeuronShare,
    Target,
    attribute_run,
    circuit_sites,
    direct_logit_attribution,
    neuron_shares,
    resolve_target,
    single_token,
)
from analysis.circuits.graph import (
    DEFAULT_THRESHOLD,
    MAX_THRESHOLD,
    MIN_THRESHOLD,
    ContributionGraph,
    Contributions,
    GraphEdge,
    contribution_graph,
    contributions,
    edge_heads,
    prune_graph,
    run_contributions,
)
from analysis.circuits.patching import (
    MAX_CELLS,
    PATCH_SITE_LABELS,
    PATCH_SITES,
    Corruption,
    PatchingGrid,
    noise_scale,
    patching_grid,
)

__all__ = [
    "DEFAULT_THRESHOLD", "MAX_CELLS", "MAX_THRESHOLD", "MIN_THRESHOLD", "PATCH_SITES", "PATCH_SITE_LABELS",
    "TARGET_KINDS", "Attribution", "ContributionGraph", "NeuronShare", "Contributions", "Corruption", "GraphEdge", "PatchingGrid",
    "Target", "attribute_run", "circuit_sites", "contribution_graph", "contributions", "direct_logit_attribution",
    "edge_heads", "neuron_shares", "noise_scale", "patching_grid", "prune_graph", "resolve_target", "run_contributions",
    "single_token",
]
