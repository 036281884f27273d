"""Neurons page (DeepDecipher / Neuroscope's job): which texts activate this neuron most, which neurons are
similar, which neurons fire on this token? Public API: building and opening neuron indexes, a unit's record,
search, ranking, comparison, graphs, and a unit on your own text."""

from analysis.neurons.index import (
    BUILD_COMMAND,
    FORMAT,
    build_index,
    corpus_rows,
    corpus_texts,
    index_id,
    index_path,
    list_indexes,
    neuron_direction,
    neuron_logits,
    open_index,
)
from analysis.neurons.scanner import QUANTILES, Group, IndexConfig, Scanner, make_batches, mlp_group
from analysis.neurons.store import NeuronIndex, NotFound, Snippet, UnitRecord
from analysis.neurons.views import (
    NeuronView,
    compare,
    feature_record,
    graph_for,
    layer_ranking,
    neuron_record,
    parse_layer,
    parse_unit,
    search_token,
    unit_on_text,
    whole_rows,
)

__all__ = [
    "BUILD_COMMAND", "FORMAT", "QUANTILES", "Group", "IndexConfig", "NeuronIndex", "NeuronView", "NotFound",
    "Scanner", "Snippet", "UnitRecord", "build_index", "compare", "corpus_rows", "corpus_texts", "feature_record",
    "graph_for", "index_id", "index_path", "layer_ranking", "list_indexes", "make_batches", "mlp_group",
    "neuron_direction", "neuron_logits", "neuron_record", "open_index", "parse_layer", "parse_unit",
    "search_token", "unit_on_text", "whole_rows",
]
