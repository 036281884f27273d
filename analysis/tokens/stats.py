"""Statistics of activation vectors for the Tokens page: IQR outliers, normalization, histograms.

Pure numpy/torch, no Dash. Outliers follow DeepPeek: Tukey fences with factor 3, computed separately
for the negative and the positive values of one vector (massive activations are one-signed, so one
fence over both signs would hide them). Hand-written: numpy/scipy have quantiles but no per-sign
Tukey rule, and we need it row-wise on [T, d] matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NORMALIZATIONS = ("none", "normalized", "no_outliers")
NORMALIZATION_LABELS = {
    "none": "none",
    "normalized": "normalized (unit RMS per token)",
    "no_outliers": "normalized, outliers excluded",
}
IQR_FACTOR = 3.0


def iqr_outliers(x: torch.Tensor | np.ndarray, factor: float = IQR_FACTOR) -> torch.Tensor:
    """Boolean mask of outliers of each row of ``x`` ([d] or [T, d]).

    Negative and positive entries are judged separately: within each sign group, a value is an
    outlier when it lies below Q1 - factor*IQR or above Q3 + factor*IQR of that group. Zeros and
    groups with fewer than 4 values never produce outliers.
    """
    if np.ndim(x) == 1:  # one vector: numpy, no torch thread-pool round trips (hot path)
        return torch.from_numpy(_iqr_outliers_1d(np.asarray(x, dtype=np.float32), factor))
    t = torch.as_tensor(x, dtype=torch.float32)
    squeeze = t.ndim == 1
    rows = t.reshape(1, -1) if squeeze else t.reshape(t.shape[0], -1)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    for group in (rows < 0, rows > 0):
        vals = torch.where(group, rows, torch.full_like(rows, float("nan")))
        enough = group.sum(dim=1, keepdim=True) >= 4
        q = torch.nanquantile(vals, torch.tensor([0.25, 0.75]), dim=1, keepdim=True)
        q1, q3 = q[0], q[1]
        iqr = q3 - q1
        out = group & enough & ((rows < q1 - factor * iqr) | (rows > q3 + factor * iqr))
        mask |= out
    return mask.reshape(t.shape) if not squeeze else mask[0]


def _iqr_outliers_1d(v: np.ndarray, factor: float) -> np.ndarray:
    mask = np.zeros(v.shape, dtype=bool)
    for group in (v < 0, v > 0):
        vals = v[group]
        if vals.size < 4:
            continue
        q1, q3 = np.quantile(vals, [0.25, 0.75])
        iqr = q3 - q1
        mask |= group & ((v < q1 - factor * iqr) | (v > q3 + factor * iqr))
    return mask


def normalize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-token normalization of [T, d] vectors.

    ``none``: as captured. ``normalized``: each token divided by its RMS (scale-free, so tokens
    with huge norms do not dominate the colouring). ``no_outliers``: each token's IQR outliers
    set to zero, then divided by the RMS of the remaining entries.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"Unknown normalization '{mode}': use one of {', '.join(NORMALIZATIONS)}.")
    x = x.float()
    if mode == "none":
        return x
    if mode == "no_outliers":
        keep = ~iqr_outliers(x)
        x = x * keep
        count = keep.sum(dim=-1, keepdim=True).clamp(min=1)
    else:
        count = torch.tensor(float(x.shape[-1]))
    rms = ((x * x).sum(dim=-1, keepdim=True) / count).sqrt().clamp(min=1e-12)
    return x / rms


def median_token(x: torch.Tensor) -> int:
    """Index of the token whose activation sum (sum of |x|) is the median over tokens."""
    sums = np.abs(np.asarray(x)).sum(axis=-1)
    order = np.argsort(sums, kind="stable")
    return int(order[(len(order) - 1) // 2])


@dataclass
class Histogram:
    """Shared-bin histograms of the median and selected tokens' vectors, with outliers."""

    edges: list[float]
    median_counts: list[int]
    selected_counts: list[int]
    median_index: int
    selected_index: int
    outlier_dims: list[int]  # outliers of the selected token (IQR x3 per sign)
    outlier_values: list[float]
    dim: int | None
    dim_value: float | None


def histogram(x: torch.Tensor, selected: int, dim: int | None = None, bins: int = 120) -> Histogram:
    """Histograms of the median token's and the selected token's vectors over shared bins."""
    med = median_token(x)
    a = x[med].numpy().astype(np.float64)
    b = x[selected].numpy().astype(np.float64)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    outliers = iqr_outliers(x[selected]).numpy()
    dims = np.flatnonzero(outliers)
    dims = dims[np.argsort(-np.abs(b[dims]))]
    dim_ok = dim is not None and 0 <= dim < b.shape[0]
    return Histogram(
        edges=[float(e) for e in edges],
        median_counts=np.histogram(a, edges)[0].tolist(),
        selected_counts=np.histogram(b, edges)[0].tolist(),
        median_index=med,
        selected_index=selected,
        outlier_dims=[int(d) for d in dims],
        outlier_values=[float(b[d]) for d in dims],
        dim=int(dim) if dim_ok else None,
        dim_value=float(b[dim]) if dim_ok else None,
    )


@dataclass
class Density:
    """All tokens' (dimension, value) points binned: counts[value_bin][dim] (values beyond the
    0.1-99.9 percentile range are counted in the edge bins)."""

    value_edges: list[float]
    counts: np.ndarray  # [n_value_bins, d] int
    selected_values: list[float]
    median_values: list[float]
    highlighted: list[int]


def density(x: torch.Tensor, selected: int, value_bins: int = 64) -> Density:
    """Every token's value in every dimension as a 2-D histogram (dimension x value).

    A density instead of T*d markers keeps the browser payload small (d*bins counts, not
    T*d points) while still showing all tokens.
    """
    arr = x.numpy()
    # Bins span the 0.1-99.9 percentile range: one massive activation (an attention sink's
    # residual reaches ~700 in SmolLM2) would otherwise put every other value into one bin.
    lo, hi = (float(v) for v in np.percentile(arr, [0.1, 99.9], method="nearest"))
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max()) if arr.max() > arr.min() else float(arr.min()) + 1.0
    edges = np.linspace(lo, hi, value_bins + 1)
    idx = np.clip(((arr - lo) * (value_bins / (hi - lo))).astype(np.int64), 0, value_bins - 1)  # [T, d]
    d = arr.shape[1]
    flat = (idx * d + np.arange(d)[None, :]).ravel()
    counts = np.bincount(flat, minlength=value_bins * d).reshape(value_bins, d).astype(np.int32)
    med = median_token(x)
    return Density(
        value_edges=[float(e) for e in edges],
        counts=counts,
        selected_values=arr[selected].tolist(),
        median_values=arr[med].tolist(),
        highlighted=[int(d) for d in np.flatnonzero(iqr_outliers(x[selected]).numpy())],
    )
