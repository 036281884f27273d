"""Graph metrics of an NRAG (LLM-MRI's ``Metrics.get_basic_metrics`` set, per-layer degree) and the
classifier evaluation of reduced layers against the full last layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np
from scipy import stats


@dataclass
class GraphMetrics:
    mean_degree: float
    var_degree: float
    skew_degree: float
    kurt_degree: float
    mean_strength: float
    var_strength: float
    skew_strength: float
    kurt_strength: float
    assortativity: float
    density: float
    center_of_mass: float
    center_of_strength: float
    n_nodes: int
    n_edges: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _moments(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sample variance, and bias-corrected skewness / excess kurtosis (pandas' definitions)."""
    if len(values) == 0:
        return (float("nan"),) * 4
    var = float(np.var(values, ddof=1)) if len(values) > 1 else float("nan")
    skew = float(stats.skew(values, bias=False)) if len(values) > 2 else float("nan")
    kurt = float(stats.kurtosis(values, bias=False)) if len(values) > 3 else float("nan")
    return float(np.mean(values)), var, skew, kurt


def _layer_of(node: str) -> int:
    return int(node.split("_")[0])


def graph_metrics(g: nx.DiGraph) -> GraphMetrics:
    """Degree/strength moments, weighted degree assortativity, density, centers of mass/strength.

    ``layers`` is the number of hidden states (embeddings + blocks). Center of mass = mean over nodes
    of (layer - layers/2); center of strength = sum over layers of (std of node strength in the layer)
    x (layer - layers/2) -- LLM-MRI's definitions, kept so published numbers compare.
    """
    nodes = list(g.nodes())
    degree = np.array([d for _, d in g.degree(nodes)], dtype=np.float64)
    strength = np.array([s for _, s in g.degree(nodes, weight="weight")], dtype=np.float64)
    half = g.graph["layers"] / 2
    layers = np.array([_layer_of(n) for n in nodes])
    center_of_mass = float(np.mean(layers - half)) if nodes else float("nan")
    center_of_strength = 0.0
    for layer in np.unique(layers):
        s = strength[layers == layer]
        if len(s) > 1:  # pandas' std of one value is NaN and LLM-MRI's sum becomes NaN; skip instead
            center_of_strength += float(np.std(s, ddof=1)) * (layer - half)
    try:
        assort = float(nx.degree_assortativity_coefficient(g, weight="weight"))
    except (ValueError, ZeroDivisionError):
        assort = float("nan")
    md, vd, sd, kd = _moments(degree)
    ms, vs, ss, ks = _moments(strength)
    return GraphMetrics(md, vd, sd, kd, ms, vs, ss, ks, assort, float(nx.density(g)), center_of_mass,
                        center_of_strength, g.number_of_nodes(), g.number_of_edges())


def degree_by_layer(g: nx.DiGraph) -> list[dict[str, float]]:
    """Per layer: number of nodes, mean and variance of degree, mean strength."""
    rows = []
    by_layer: dict[int, list[str]] = {}
    for n in g.nodes():
        by_layer.setdefault(_layer_of(n), []).append(n)
    for layer in range(int(g.graph["layers"])):
        members = by_layer.get(layer, [])
        deg = np.array([g.degree(n) for n in members], dtype=np.float64)
        st = np.array([g.degree(n, weight="weight") for n in members], dtype=np.float64)
        rows.append({"layer": layer, "nodes": len(members),
                     "mean_degree": float(deg.mean()) if len(deg) else float("nan"),
                     "var_degree": float(deg.var(ddof=1)) if len(deg) > 1 else float("nan"),
                     "mean_strength": float(st.mean()) if len(st) else float("nan")})
    return rows


@dataclass
class ClassifierReport:
    """Cross-validated scores of logistic regression on reduced layers vs the full last layer."""

    metrics: list[str]
    reduced: dict[str, list[float]]
    full: dict[str, list[float]]
    n_splits: int
    test_size: float
    n_reduced_features: int
    n_full_features: int

    def delta(self) -> dict[str, float]:
        """Mean of (full - reduced) per metric, LLM-MRI's ``Evaluation.evaluate_model`` delta."""
        return {m: float(np.mean(np.subtract(self.full[m], self.reduced[m]))) for m in self.metrics}

    def rows(self) -> list[dict[str, float | str]]:
        d = self.delta()
        return [{"metric": m, "reduced": float(np.mean(self.reduced[m])), "full": float(np.mean(self.full[m])),
                 "delta_full_minus_reduced": d[m]} for m in self.metrics]


def evaluate_classifier(coords: np.ndarray, full_last: np.ndarray, label_ids: np.ndarray, n_splits: int = 5,
                        test_size: float = 0.3, random_state: int = 42,
                        metrics: Sequence[str] = ("f1_macro", "f1_weighted", "accuracy", "balanced_accuracy"),
                        ) -> ClassifierReport:
    """Stratified shuffle splits; StandardScaler + LogisticRegression on (a) every layer's reduced
    components concatenated, (b) the full pooled last layer; same splits for both (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from analysis.errors import InputError

    counts = np.bincount(label_ids)
    if counts[counts > 0].min() < 2:
        raise InputError("Every category needs at least 2 texts for a stratified split.")
    n_test = int(np.ceil(test_size * len(label_ids)))
    if n_test < len(counts[counts > 0]) or len(label_ids) - n_test < len(counts[counts > 0]):
        raise InputError(f"Too few texts ({len(label_ids)}) for a {test_size:.0%} test split with {len(counts)} classes.")
    reduced = np.transpose(coords, (1, 0, 2)).reshape(coords.shape[1], -1)
    splits = list(StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
                  .split(reduced, label_ids))
    scoring = {m: m for m in metrics}

    def scores(x: np.ndarray) -> dict[str, list[float]]:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=random_state))
        cv = cross_validate(pipe, x, label_ids, cv=splits, scoring=scoring)
        return {m: [float(v) for v in cv[f"test_{m}"]] for m in metrics}

    return ClassifierReport(list(metrics), scores(reduced), scores(np.asarray(full_last, dtype=np.float64)),
                            n_splits, test_size, reduced.shape[1], int(full_last.shape[1]))
