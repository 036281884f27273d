"""Lens page (logit lens / tuned lens): at which layer does the prediction form?

Public API: ``lens_grid`` / ``lens_difference`` (a window of a cached run through a lens, streamed
statistics), the lens objects (``logit_lens``, ``load_tuned_lens``, ``resolve_lens_source``), and
``train_tuned_lens`` (``make lens``, the page's Train job)."""

from analysis.lens.grid import (
    DIVERGENCES,
    LENSES,
    MAX_WIDTH,
    RESIDUALS,
    STATISTICS,
    LensGrid,
    check_window,
    compute_stats,
    get_lens,
    layer_labels,
    lens_difference,
    lens_edit_shift,
    lens_grid,
    lens_run,
    lens_sites,
)
from analysis.lens.lenses import (
    HUB_REPO,
    SHIPPED_LENSES,
    default_lens_dir,
    fresh_tuned_lens,
    get_unembed,
    load_tuned_lens,
    logit_lens,
    resolve_lens_source,
    save_lens,
    trained_lens_dir,
)
from analysis.lens.stats import CellStats, pair_divergence, stream_stats
from analysis.lens.train import TrainConfig, TrainResult, train_tuned_lens

__all__ = [
    "DIVERGENCES", "HUB_REPO", "LENSES", "MAX_WIDTH", "RESIDUALS", "SHIPPED_LENSES", "STATISTICS", "CellStats",
    "LensGrid", "TrainConfig", "TrainResult", "check_window", "compute_stats", "default_lens_dir",
    "fresh_tuned_lens", "get_lens", "get_unembed", "layer_labels", "lens_difference", "lens_edit_shift", "lens_grid", "lens_run",
    "lens_sites", "load_tuned_lens", "logit_lens", "pair_divergence", "resolve_lens_source", "save_lens",
    "stream_stats", "train_tuned_lens", "trained_lens_dir",
]
