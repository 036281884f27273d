"""NRAG graphs: regions linked across neighbouring layers, as networkx DiGraphs.

- 2-D: nodes are grid cells ``"{layer}_{x}_{y}"`` (LLM-MRI's names); an edge from a cell of layer
  l to a cell of layer l+1 weighs the number of texts that sit in both.
- more dimensions: nodes are components ``"{layer}_{c}"``; an edge links two components of
  neighbouring layers whose Spearman correlation (over the category's texts) exceeds a threshold.

With two categories every edge keeps BOTH weights (``weight_<category>``; ``weight`` is their sum),
where LLM-MRI's ``nx.compose`` kept only the second category's. Node positions are fixed by
(layer, cell/component) only, so graphs of different categories line up.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import networkx as nx
import numpy as np
from scipy.stats import spearmanr

from analysis.errors import InputError


def _check_categories(categories: Sequence[str], classes: Sequence[str]) -> list[str]:
    cats = list(dict.fromkeys(categories))
    if not cats:
        raise InputError("Pick one or two categories for the graph.")
    if len(cats) > 2:
        raise InputError(f"A graph shows at most two categories (got {len(cats)}): compare them two at a time.")
    unknown = [c for c in cats if c not in classes]
    if unknown:
        raise InputError(f"Unknown category {unknown[0]!r}; the dataset's categories are {', '.join(classes)}.")
    return cats


def _attr(name: str) -> str:
    return "weight_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def transition_counts(cells: np.ndarray, mask: np.ndarray) -> dict[tuple[str, str], tuple[int, int]]:
    """{(cell_l, cell_l+1): (count, level)} over the texts selected by ``mask``; cells [L, N, 2]."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    sel = cells[:, mask]
    for level in range(cells.shape[0] - 1):
        pairs = np.concatenate([sel[level], sel[level + 1]], axis=1)  # [n, 4]: x1 y1 x2 y2
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        for (x1, y1, x2, y2), count in zip(uniq.tolist(), counts.tolist(), strict=True):
            out[(f"{level}_{x1}_{y1}", f"{level + 1}_{x2}_{y2}")] = (int(count), level)
    return out


def grid_graph(cells: np.ndarray, label_ids: np.ndarray, classes: Sequence[str], categories: Sequence[str],
               grid: int) -> nx.DiGraph:
    """The 2-D NRAG of one or two categories (weights = texts moving cell -> cell)."""
    cats = _check_categories(categories, classes)
    g = nx.DiGraph(kind="grid", categories=",".join(cats), layers=int(cells.shape[0]), grid=int(grid))
    for cat in cats:
        mask = label_ids == list(classes).index(cat)
        for (u, v), (count, level) in transition_counts(cells, mask).items():
            for node in (u, v):
                if node not in g:
                    layer, x, y = (int(p) for p in node.split("_"))
                    g.add_node(node, layer=layer, cell_x=x, cell_y=y, pos_x=float(x * grid + y), pos_y=float(-layer))
            if not g.has_edge(u, v):
                g.add_edge(u, v, level=level, weight=0, **{_attr(c): 0 for c in cats})
            g.edges[u, v][_attr(cat)] = count
            g.edges[u, v]["weight"] += count
    _label_edges(g, cats)
    return g


def spearman_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """rho[i, j] = Spearman correlation of column i of ``a`` with column j of ``b`` (scipy)."""
    k = a.shape[1]
    with warnings.catch_warnings():  # a constant layer (CLS embeddings) has undefined (NaN) correlations: no edges
        warnings.simplefilter("ignore")
        rho = spearmanr(np.concatenate([a, b], axis=1)).statistic
    rho = np.atleast_2d(rho)
    return np.asarray(rho[:k, k:], dtype=np.float64)


def correlation_graph(coords: np.ndarray, label_ids: np.ndarray, classes: Sequence[str], categories: Sequence[str],
                      threshold: float) -> nx.DiGraph:
    """The n-D NRAG: components of neighbouring layers linked where Spearman rho > ``threshold``."""
    cats = _check_categories(categories, classes)
    if not -1.0 <= threshold < 1.0:
        raise InputError(f"The correlation threshold must be in [-1, 1) (got {threshold}).")
    n_layers, _, k = coords.shape
    g = nx.DiGraph(kind="correlation", categories=",".join(cats), layers=int(n_layers), threshold=float(threshold))
    for layer in range(n_layers):
        for c in range(k):
            g.add_node(f"{layer}_{c}", layer=layer, component=c, pos_x=float(c), pos_y=float(-layer))
    for cat in cats:
        mask = label_ids == list(classes).index(cat)
        if mask.sum() < 3:
            raise InputError(f"Category {cat!r} has {int(mask.sum())} texts; a correlation needs at least 3.")
        for level in range(n_layers - 1):
            rho = spearman_between(coords[level, mask], coords[level + 1, mask])
            for i, j in zip(*np.nonzero(rho > threshold), strict=True):
                u, v = f"{level}_{i}", f"{level + 1}_{j}"
                if not g.has_edge(u, v):
                    g.add_edge(u, v, level=level, weight=0.0, **{_attr(c): 0.0 for c in cats})
                g.edges[u, v][_attr(cat)] = float(rho[i, j])
                g.edges[u, v]["weight"] += float(rho[i, j])
    _label_edges(g, cats)
    return g


def _label_edges(g: nx.DiGraph, cats: list[str]) -> None:
    """``label`` = which categories use the edge ("a", "b" or "a+b")."""
    for _, _, data in g.edges(data=True):
        data["label"] = "+".join(c for c in cats if data[_attr(c)])


def weight_attr(category: str) -> str:
    """The edge attribute that holds ``category``'s weight."""
    return _attr(category)


def graph_payload(g: nx.DiGraph, min_weight: float = 0.0) -> dict:
    """Plain data for drawing and JSON export: nodes with positions/degree, edges with both weights.

    ``min_weight`` keeps only edges of at least that weight (and the nodes they touch) for drawing: on a
    30-layer model the 2-D graph has ~750 nodes and ~1,800 edges, most of them carrying one text. Degrees,
    strengths and the page's metrics are always those of the whole graph."""
    cats = [c for c in g.graph.get("categories", "").split(",") if c]
    degree = dict(g.degree())
    strength = dict(g.degree(weight="weight"))
    kept = [(u, v, d) for u, v, d in g.edges(data=True) if float(d["weight"]) >= min_weight]
    touched = {n for u, v, _d in kept for n in (u, v)} if min_weight > 0 else set(g.nodes())
    nodes = [{"id": n, "x": d["pos_x"], "y": d["pos_y"], "layer": d["layer"], "degree": int(degree[n]),
              "strength": float(strength[n])} for n, d in g.nodes(data=True) if n in touched]
    edges = [{"source": u, "target": v, "level": d["level"], "weight": float(d["weight"]),
              "weights": {c: float(d[_attr(c)]) for c in cats}} for u, v, d in kept]
    return {"kind": g.graph.get("kind"), "categories": cats, "layers": g.graph.get("layers"), "nodes": nodes,
            "edges": edges, "min_weight": min_weight, "n_nodes_total": g.number_of_nodes(),
            "n_edges_total": g.number_of_edges()}
