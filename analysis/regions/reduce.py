"""Per-layer dimensionality reduction (PCA / SVD / UMAP) and the grid of activation regions.

Follows LLM-MRI's grid recipe: standardize each layer's pooled vectors, reduce to ``n_components``,
cut each of the first two axes into ``grid`` equal-width bins (``pandas.cut``); a region is a cell.
PCA and SVD signs follow torchdr's convention (the sample with the largest |score| on a component
gets a positive score), which LLM-MRI inherits, so grids are the same, not mirrored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.params import parse_choice, parse_int

METHODS = ("pca", "svd", "umap")
MAX_COMPONENTS = 64
MAX_GRID = 50


@dataclass(frozen=True)
class ReductionParams:
    method: str = "pca"
    n_components: int = 2
    grid: int = 10
    random_state: int | None = 42

    def validate(self, n_samples: int, dim: int) -> ReductionParams:
        """Check the parameters against the data (the number of texts and their width)."""
        parse_choice(self.method, "Reduction", METHODS)
        parse_int(self.n_components, "Components", 2, max(2, min(MAX_COMPONENTS, dim, n_samples - 1)),
                  field="regions-k")
        parse_int(self.grid, "Grid size", 2, MAX_GRID, field="regions-grid")
        return self

    @classmethod
    def parse(cls, method: Any, k: Any, grid: Any, seed: Any) -> ReductionParams:
        """The reduction controls as typed (bounds named beside each field)."""
        return cls(method=parse_choice(method or "pca", "Reduction", METHODS),
                   n_components=parse_int(k, "Components", 2, MAX_COMPONENTS, field="regions-k"),
                   grid=parse_int(grid, "Grid size", 2, MAX_GRID, field="regions-grid"),
                   random_state=parse_int(seed, "Random state", 0, 2**31 - 1, default=None, field="regions-seed"))

    def as_dict(self) -> dict:
        return asdict(self)


def _flip_signs(scores: np.ndarray) -> np.ndarray:
    """torchdr's ``svd_flip(u_based_decision=True)``: the largest-|score| sample is positive."""
    idx = np.argmax(np.abs(scores), axis=0)
    signs = np.sign(scores[idx, np.arange(scores.shape[1])])
    signs[signs == 0] = 1.0
    return scores * signs


def reduce_layer(x: np.ndarray, params: ReductionParams) -> np.ndarray:
    """[N, d] -> [N, n_components] float64 with the chosen method."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    x64 = np.asarray(x, dtype=np.float64)
    if params.method == "pca":
        from sklearn.decomposition import PCA

        z = StandardScaler().fit_transform(x64)
        with warnings.catch_warnings():  # a constant layer (e.g. CLS embeddings) has zero variance
            warnings.simplefilter("ignore", RuntimeWarning)
            scores = PCA(n_components=params.n_components, svd_solver="full").fit_transform(z)
        return _flip_signs(scores)
    if params.method == "svd":
        from sklearn.decomposition import TruncatedSVD

        z = StandardScaler().fit_transform(x64)
        if not np.any(z):  # a constant layer (e.g. identical [CLS] embeddings): ARPACK cannot start
            return np.zeros((z.shape[0], params.n_components))
        svd = TruncatedSVD(n_components=params.n_components, algorithm="arpack", random_state=params.random_state)
        return _flip_signs(svd.fit_transform(z))
    import umap  # lazy: importing umap (numba) takes ~20 s

    z = MinMaxScaler().fit_transform(x64)
    model = umap.UMAP(n_components=params.n_components, metric="cosine", random_state=params.random_state,
                      n_jobs=1 if params.random_state is not None else -1)
    return np.asarray(model.fit_transform(z), dtype=np.float64)


def reduce_all(pooled: np.ndarray, params: ReductionParams,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """[L, N, d] -> [L, N, k]: each layer reduced on its own (as LLM-MRI does)."""
    params.validate(pooled.shape[1], pooled.shape[2])
    out = np.empty((pooled.shape[0], pooled.shape[1], params.n_components), dtype=np.float64)
    for layer in range(pooled.shape[0]):
        out[layer] = reduce_layer(pooled[layer], params)
        if progress is not None:
            progress(layer + 1, pooled.shape[0])
    return out


def grid_cells(coords: np.ndarray, grid: int) -> np.ndarray:
    """[L, N, >=2] -> [L, N, 2] integer cells (x, y) by ``pandas.cut`` into ``grid`` equal-width bins."""
    cells = np.empty((coords.shape[0], coords.shape[1], 2), dtype=np.int64)
    for layer in range(coords.shape[0]):
        for axis in range(2):
            cells[layer, :, axis] = pd.cut(coords[layer, :, axis], grid, labels=False)
    return cells


def cell_counts(cells: np.ndarray, label_ids: np.ndarray, n_classes: int, grid: int) -> np.ndarray:
    """counts[layer, class, y, x]: how many texts of each class fall in each region."""
    n_layers = cells.shape[0]
    counts = np.zeros((n_layers, n_classes, grid, grid), dtype=np.int64)
    for layer in range(n_layers):
        np.add.at(counts[layer], (label_ids, cells[layer, :, 1], cells[layer, :, 0]), 1)
    return counts
