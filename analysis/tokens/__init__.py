"""Tokens page (DeepPeek's job): what does the model predict here, where does it attend, what do its
activations look like? Public API: open samples as runs, then every view is computed from the cached runs."""

from analysis.tokens.attention import (
    DIRECTIONS,
    ROPE_LABELS,
    ROPE_MODES,
    AttentionGrid,
    AttnSpec,
    attention_grid,
    attention_values,
    attn_spec,
    head_values,
)
from analysis.tokens.focus import UnitHere, features_here, neurons_here
from analysis.tokens.samples import MAX_OPEN_SAMPLES, OpenSamples, open_samples, sample_list
from analysis.tokens.stats import NORMALIZATION_LABELS, NORMALIZATIONS, density, histogram, iqr_outliers, normalize
from analysis.tokens.views import (
    CORE_KINDS,
    SIMILARITIES,
    SIMILARITY_LABELS,
    SITE_KINDS,
    TOOL_LABELS,
    TOOLS,
    Colouring,
    NextTokenStats,
    PredictionPanel,
    ViewRequest,
    activation_sums,
    attention_matrix,
    compute_view,
    dimension_values,
    edit_shift,
    edited_runs,
    estimate_bytes,
    model_attn_spec,
    needed_kinds,
    next_token_stats,
    page_kinds,
    page_sites,
    predictions,
    similarity_values,
    site_kind_label,
    site_matrix,
    token_vector,
    vector_csv,
    vector_npy,
)

__all__ = [
    "CORE_KINDS", "DIRECTIONS", "MAX_OPEN_SAMPLES", "NORMALIZATIONS", "NORMALIZATION_LABELS", "ROPE_LABELS",
    "ROPE_MODES", "SIMILARITIES", "SIMILARITY_LABELS", "SITE_KINDS", "TOOLS", "TOOL_LABELS", "AttentionGrid",
    "AttnSpec", "Colouring", "UnitHere", "features_here", "neurons_here", "NextTokenStats", "OpenSamples", "PredictionPanel", "ViewRequest", "activation_sums",
    "attention_grid", "attention_matrix", "attention_values", "attn_spec", "compute_view", "density",
    "dimension_values", "edit_shift", "edited_runs", "estimate_bytes", "head_values", "histogram", "iqr_outliers", "model_attn_spec",
    "needed_kinds", "next_token_stats", "normalize", "open_samples", "page_kinds", "page_sites", "predictions",
    "sample_list", "similarity_values", "site_kind_label", "site_matrix", "token_vector", "vector_csv", "vector_npy",
]
