"""Features page (SAEs, the SAE multitool's job): what does this SAE feature mean?

Public API: SAEs from sae-lens or the embedded one (``load_sae``, ``resolve``), a text's feature
activations, the corpus scan (top examples, quantile bins, densities, correlations), feature records,
token lists and definition trees of the ghost token, steering, search by token, and SAE training."""

from analysis.features.records import (
    SAEChoice,
    SearchHit,
    TextActivations,
    activation_neighbours,
    decoder_neighbours,
    default_feature,
    density_from_training,
    feature_edit_effect,
    feature_explanation,
    feature_record,
    log10_density,
    no_sae_message,
    resolve,
    sae_choices,
    search_features,
    text_activations,
)
from analysis.features.sae import (
    EMBEDDED_SAE,
    SHIPPED_SAE,
    TRAIN_COMMAND,
    LoadedSAE,
    SAEError,
    SAENotFound,
    SAEQuality,
    check_fit,
    embedded_sae_dir,
    embedded_sae_exists,
    evaluate_sae,
    hook_to_site,
    in_distribution,
    load_sae,
    splice_edit,
    trained_sae_dir,
)
from analysis.features.scan import (
    DEFAULT_TOKENS,
    MAX_TOKENS,
    FeatureStats,
    Scan,
    cached_scan,
    feature_stats,
    get_scan,
    scan_corpus,
)
from analysis.features.steer import MODES, SteerResult, generate_steered
from analysis.features.train import SAETrainOptions
from analysis.features.train import run as train_sae
from analysis.features.tree import (
    DEFAULT_PROMPT,
    GHOST,
    DefinitionTree,
    TreeNode,
    TreeOptions,
    build_tree,
    definitions,
    tree_layout,
)
from analysis.features.vectors import (
    NOTEBOOK_SCALE,
    VECTOR_KINDS,
    EmbeddingStats,
    TokenList,
    VectorOptions,
    embedding_stats,
    first_principal_component,
    ghost_vector,
    logit_effects,
    token_list,
)

__all__ = [
    "DEFAULT_PROMPT", "DEFAULT_TOKENS", "EMBEDDED_SAE", "GHOST", "MAX_TOKENS", "MODES", "NOTEBOOK_SCALE",
    "SHIPPED_SAE", "TRAIN_COMMAND", "VECTOR_KINDS", "DefinitionTree", "EmbeddingStats", "FeatureStats", "LoadedSAE",
    "SAEChoice", "SAEError", "SAETrainOptions", "SAENotFound", "SAEQuality", "Scan", "SearchHit", "SteerResult", "TextActivations",
    "TokenList", "TreeNode", "TreeOptions", "VectorOptions", "activation_neighbours", "build_tree", "cached_scan",
    "check_fit", "decoder_neighbours", "default_feature", "definitions", "density_from_training", "embedded_sae_dir",
    "embedded_sae_exists", "embedding_stats", "evaluate_sae", "feature_edit_effect", "feature_explanation", "feature_record",
    "feature_stats", "first_principal_component", "generate_steered", "get_scan", "ghost_vector", "hook_to_site",
    "in_distribution", "load_sae", "log10_density", "logit_effects", "no_sae_message", "resolve", "sae_choices", "scan_corpus",
    "search_features", "splice_edit", "text_activations", "token_list", "train_sae", "trained_sae_dir", "tree_layout",
]
