"""A token-pattern graph in the spirit of Neuron2Graph (Foote et al., 2023), built from a unit's snippets.

For each top snippet: (1) *prune* — the shortest context ending at the max token that keeps at least
``keep`` of the activation (all suffix lengths in one batched forward); (2) *ablate* — replace each
token of the pruned context by a neutral token and re-run (one batched forward) to measure how much
of the activation it carries; tokens above ``important`` stay in the pattern, the others become
wildcards; (3) *merge* the patterns into a trie rooted at the activating token (networkx DiGraph).
Hand-written because the N2G package targets TransformerLens models; this runs on our HF capture.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import torch

from analysis.capture import capture
from analysis.io import pad_id, pad_right
from analysis.models import LoadedModel
from analysis.neurons.store import Snippet

WILDCARD = "·"
MAX_BATCH = 64


@dataclass
class Pattern:
    """One snippet's pruned, ablated context: kept tokens (or wildcards) ending at the activating token."""

    row_id: int
    act: float  # stored activation in the full row
    pruned_act: float  # activation with only the pruned context
    context_len: int  # tokens kept by pruning (including the activating token)
    tokens: list[str]  # earliest first; WILDCARD for unimportant tokens
    importance: list[float]  # per kept token: fraction of the activation lost when it is ablated (last = 1)

    def label(self) -> str:
        return " ".join(repr(t) if t != WILDCARD else WILDCARD for t in self.tokens)


def unit_activations(lm: LoadedModel, site: str, unit: int, seqs: list[list[int]], encode: Any = None) -> list[float]:
    """The unit's activation at the last token of each sequence (right-padded batches, attention masks)."""
    out: list[float] = []
    pad = pad_id(lm.tokenizer)
    for start in range(0, len(seqs), MAX_BATCH):
        chunk = seqs[start : start + MAX_BATCH]
        ids, mask = pad_right(chunk, pad)
        acts = capture(lm, ids, [site], attention_mask=mask, logits=False, stop_early=True).acts[site]
        last = mask.sum(1) - 1
        x = acts[torch.arange(len(chunk)), last.to(acts.device)]
        if encode is not None:
            x = encode(x)
        out += x[:, unit].float().cpu().tolist()
    return out


def build_patterns(lm: LoadedModel, site: str, unit: int, snippets: list[Snippet], rows: dict[int, list[int]],
                   prefix: list[int], keep: float = 0.5, important: float = 0.3, max_context: int = 24,
                   filler: int | None = None, encode: Any = None) -> list[Pattern]:
    """Prune and ablate each snippet's context (two batched forwards in all)."""
    todo = [s for s in snippets if s.act > 0]
    if not todo:
        return []
    contexts = []
    for s in todo:
        row = rows[s.row_id]
        lo = max(len(prefix), s.pos - max_context + 1)
        contexts.append(row[lo : s.pos + 1])
    # 1. prune: every suffix length at once
    seqs, owners = [], []
    for i, ctx in enumerate(contexts):
        for length in range(1, len(ctx) + 1):
            seqs.append(prefix + ctx[-length:])
            owners.append((i, length))
    acts = unit_activations(lm, site, unit, seqs, encode)
    best: dict[int, tuple[int, float]] = {}
    for (i, length), a in zip(owners, acts, strict=True):
        if i not in best and a >= keep * todo[i].act:
            best[i] = (length, a)
    pruned = []
    for i, ctx in enumerate(contexts):
        length, a = best.get(i, (len(ctx), acts[[k for k, o in enumerate(owners) if o == (i, len(ctx))][0]]))
        pruned.append((ctx[-length:], a))
    # 2. ablate each context token of the pruned context
    fill = filler if filler is not None else pad_id(lm.tokenizer)
    seqs, owners = [], []
    for i, (ctx, _a) in enumerate(pruned):
        for j in range(len(ctx) - 1):
            seqs.append(prefix + ctx[:j] + [fill] + ctx[j + 1 :])
            owners.append((i, j))
    ablated = unit_activations(lm, site, unit, seqs, encode) if seqs else []
    drops: dict[int, dict[int, float]] = {}
    for (i, j), a in zip(owners, ablated, strict=True):
        base = pruned[i][1]
        drops.setdefault(i, {})[j] = max(0.0, min(1.0, (base - a) / base)) if base > 0 else 0.0
    out = []
    for i, (ctx, a) in enumerate(pruned):
        strings = lm.decode(ctx)
        imp = [drops.get(i, {}).get(j, 0.0) for j in range(len(ctx) - 1)] + [1.0]
        tokens = [s if v >= important else WILDCARD for s, v in zip(strings, imp, strict=True)]
        first = next((k for k, t in enumerate(tokens) if t != WILDCARD), len(tokens) - 1)
        out.append(Pattern(todo[i].row_id, todo[i].act, float(a), len(ctx), tokens[first:], imp[first:]))
    return out


def pattern_graph(patterns: list[Pattern]) -> nx.DiGraph:
    """Merge the patterns into a trie rooted at the activating tokens: edges point towards the activation."""
    graph = nx.DiGraph()
    for p in patterns:
        path: tuple[str, ...] = ()
        child = None
        for depth, (token, imp) in enumerate(zip(reversed(p.tokens), reversed(p.importance), strict=True)):
            path = (*path, token)
            node = "|".join(path)
            if node not in graph:
                graph.add_node(node, token=token, depth=depth, count=0, act=0.0, importance=0.0)
            data = graph.nodes[node]
            data["count"] += 1
            data["act"] += p.act
            data["importance"] += imp
            if child is not None:
                graph.add_edge(node, child)
            child = node
    for _node, data in graph.nodes(data=True):
        data["act"] /= data["count"]
        data["importance"] /= data["count"]
    return graph


def graph_data(graph: nx.DiGraph) -> dict[str, Any]:
    """JSON-able nodes (with x = -depth, y spread per depth) and edges for plotting and the API."""
    by_depth: dict[int, list[str]] = {}
    for node, data in sorted(graph.nodes(data=True), key=lambda kv: (-kv[1]["count"], kv[0])):
        by_depth.setdefault(data["depth"], []).append(node)
    nodes = []
    for depth, names in by_depth.items():
        for k, name in enumerate(names):
            data = graph.nodes[name]
            nodes.append({"id": name, "token": data["token"], "depth": depth, "x": -depth,
                          "y": (len(names) - 1) / 2 - k, "count": data["count"], "act": data["act"],
                          "importance": data["importance"]})
    return {"nodes": nodes, "edges": [[a, b] for a, b in graph.edges()]}


def summarize_patterns(patterns: list[Pattern], n: int = 5) -> list[dict[str, Any]]:
    """The most common patterns (identical kept-token sequences) with how many snippets follow each."""
    counts = Counter(tuple(p.tokens) for p in patterns)
    return [{"pattern": list(k), "count": c} for k, c in counts.most_common(n)]


def neuron_graph(lm: LoadedModel, site: str, unit: int, snippets: list[Snippet], rows: dict[int, list[int]],
                 prefix: list[int], encode: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Patterns, graph and pattern summary of one unit (JSON-able)."""
    patterns = build_patterns(lm, site, unit, snippets, rows, prefix, encode=encode, **kwargs)
    graph = pattern_graph(patterns)
    return {"patterns": [asdict(p) for p in patterns], "graph": graph_data(graph),
            "summary": summarize_patterns(patterns)}
