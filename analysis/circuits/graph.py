"""Contribution graph: LLM-TT's information-flow routes (Ferrando & Voita 2024), streamed.

Every residual update is a sum of parts, ``y = sum_j x_j``. A part's contribution is its proximity to the
sum, ``max(||y||_1 - ||x_j - y + 1e-6||_1, eps)`` with eps = 1e-5 (the 1e-6 is torch's ``pairwise_distance``), normalised over the parts of that sum (LLM-TT's
``get_contributions``, L1 distance). Two updates per layer l and position p:

- attention: ``resid_mid[p] = resid_pre[p] + sum_{s, h} A[h, p, s] * v[s, h] @ W_O[h] (+ b_O)``; the parts are
  every (source s, head h) term and the residual ``resid_pre[p]``. Terms of later sources (masked, zero) count
  eps each, as they do in LLM-TT's dense [T, T, H, d] tensor.
- MLP: ``resid_post[p] = resid_mid[p] + mlp_out[p]``; two parts.

Nodes are residual states: ``X0_t`` (the embedding), ``A{l}_t`` (after attention), ``M{l}_t`` (the MLP),
``I{l}_t`` (block output). Edges: ``I{l-1}_s -> A{l}_t`` with the heads' summed contribution (plus the
residual's when s = t), ``A{l}_t -> M{l}_t -> I{l}_t`` (the MLP's) and ``A{l}_t -> I{l}_t`` (the residual's).
Pruning keeps every edge above the threshold reachable backwards from ``I{L-1}_t`` of the chosen token
(LLM-TT's ``build_paths_to_predictions``); with *renormalize* on (LLM-TT's default), parts at or below the
threshold are dropped first and the rest renormalised per update (``apply_threshold_and_renormalize``).

The [T, T, H, d] tensor of a layer is never built: the kernel runs one head and a block of target positions
at a time (``block`` x sources x d floats). Per-head values above the lowest threshold are kept sparse (a
threshold never goes lower, so renormalisation stays exact); moving the threshold only re-prunes. Parallel
blocks (GPT-NeoX) are decomposed as attention then MLP, with resid_mid = resid_pre + attn_out.
Gemma 2/3's post-attention norm is frozen at its clean scale so head terms still sum to the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.capture import Run
from analysis.circuits.attribution import circuit_sites
from analysis.circuits.decompose import FrozenNorm, head_out_weights, require_causal, sandwich_norm
from analysis.models import LoadedModel
from analysis.params import parse_bool, parse_float, parse_int
from analysis.runtime import Runtime

EPS = 1e-5  # LLM-TT's clip of a part's proximity
PAIRWISE_EPS = 1e-6  # torch's pairwise_distance (LLM-TT's distance) adds it to every difference
MIN_THRESHOLD = 0.01  # LLM-TT's slider range 0.01 .. 0.1 (default 0.04); Glassbox lets it go to 0.5
MAX_THRESHOLD = 0.5
DEFAULT_THRESHOLD = 0.04
BLOCK_FLOATS = 4 << 20  # one kernel block: positions x sources x d <= 4M floats (16 MB)


@dataclass
class LayerContributions:
    """One layer's contributions: attention parts summed over heads, the residual's, the MLP's, and the
    per-head parts above :data:`MIN_THRESHOLD` as sparse (target, source, head, value) columns."""

    attn: np.ndarray  # [T, T] float32: target x source, summed over heads
    resid_attn: np.ndarray  # [T]
    mlp: np.ndarray  # [T]
    resid_mlp: np.ndarray  # [T]
    heads_target: np.ndarray
    heads_source: np.ndarray
    heads_head: np.ndarray
    heads_value: np.ndarray


@dataclass
class Contributions:
    """Every layer's contributions for one run (what moving the threshold re-prunes)."""

    model_id: str
    tokens: list[str]
    n_heads: int
    layers: list[LayerContributions]

    @property
    def nbytes(self) -> int:
        return sum(x.attn.nbytes + x.heads_value.nbytes * 4 + 16 * len(x.mlp) for x in self.layers)


def _head_terms(lm: LoadedModel, run: Run, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(pattern [H, T, T], v @ W_O per head [H, T, d], per-position post-norm factor [T, d] or None)."""
    n_heads, group = lm.info.n_heads, lm.info.n_heads // lm.info.n_kv_heads
    w_o = head_out_weights(lm, layer)
    values = run.act(f"blocks.{layer}.attn.hook_v").float()  # [T, H_kv, d_head]
    values = values.repeat_interleave(group, dim=1) if group > 1 else values
    value_out = torch.einsum("shd,hde->hse", values, w_o.to(values.device))  # [H, T, d]
    pattern = run.act(f"blocks.{layer}.attn.hook_pattern").float()
    post = sandwich_norm(lm, layer, "attn")
    factor = None
    if post is not None:  # Gemma 2/3: head terms through the post-attention norm, frozen per position
        frozen = FrozenNorm.of(post)
        z = run.act(f"blocks.{layer}.attn.hook_z").float()
        o = z.reshape(z.shape[0], -1) @ w_o.reshape(n_heads * w_o.shape[1], -1).to(z.device)
        factor = frozen.gain.to(o.device) / frozen.scale(o)
    return pattern, value_out, factor


def attention_row_contributions(whole: torch.Tensor, resid: torch.Tensor, pattern: torch.Tensor,
                                value_out: torch.Tensor, factor: torch.Tensor | None, targets: range,
                                n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised contributions of every (source, head) part [P, T, H] and of the residual [P] to ``whole`` at
    the positions ``targets`` (a contiguous block); sources after a target get exactly eps / sum."""
    first, stop = targets.start, targets.stop
    n_sources = stop  # a block of targets reads sources 0 .. stop-1; later ones are masked
    y = whole[first:stop]  # [P, d]
    y_norm = y.abs().sum(-1)  # [P]
    n_heads = pattern.shape[0]
    # a masked (zero) part's proximity: ||y|| - ||0 - y + 1e-6||, clipped to eps, as in LLM-TT's dense tensor
    zero_prox = (y_norm - (PAIRWISE_EPS - y).abs().sum(-1)).clamp(min=EPS)  # [P]
    prox = zero_prox[:, None, None].expand(-1, n_tokens, n_heads).clone()
    for head in range(n_heads):
        weights = pattern[head, first:stop, :n_sources]  # [P, S]
        parts = weights[:, :, None] * value_out[head, None, :n_sources, :]  # [P, S, d]
        if factor is not None:
            parts = parts * factor[first:stop, None, :]
        dist = (parts - y[:, None, :]).add_(PAIRWISE_EPS).abs_().sum(-1)  # [P, S]
        prox[:, :n_sources, head] = (y_norm[:, None] - dist).clamp_(min=EPS)
        del parts
    positions = torch.arange(first, stop, device=whole.device)
    later = (torch.arange(n_tokens, device=whole.device)[None, :] > positions[:, None])[:, :, None]
    prox = torch.where(later, zero_prox[:, None, None], prox)  # masked sources' weights are exactly 0
    resid_prox = (y_norm - (resid[first:stop] - y + PAIRWISE_EPS).abs().sum(-1)).clamp(min=EPS)
    total = prox.sum(dim=(1, 2)) + resid_prox
    return prox / total[:, None, None], resid_prox / total


def _pair_contributions(whole: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-part contributions (LLM-TT's MLP case): ``whole = first + second``."""
    norm = whole.abs().sum(-1)
    a = (norm - (first - whole + PAIRWISE_EPS).abs().sum(-1)).clamp(min=EPS)
    b = (norm - (second - whole + PAIRWISE_EPS).abs().sum(-1)).clamp(min=EPS)
    return a / (a + b), b / (a + b)


def layer_contributions(lm: LoadedModel, run: Run, layer: int) -> LayerContributions:
    """One layer's contributions, streamed over heads and blocks of target positions."""
    n_tokens, d_model = run.n_tokens, lm.info.d_model
    resid_pre = run.act(f"blocks.{layer}.hook_resid_pre").float()
    resid_mid = resid_pre + run.act(f"blocks.{layer}.hook_attn_out").float()
    mlp_out = run.act(f"blocks.{layer}.hook_mlp_out").float()
    pattern, value_out, factor = _head_terms(lm, run, layer)
    attn = np.zeros((n_tokens, n_tokens), dtype=np.float32)
    resid_attn = np.zeros(n_tokens, dtype=np.float32)
    targets_kept, sources_kept, heads_kept, values_kept = [], [], [], []
    block = max(1, BLOCK_FLOATS // max(1, n_tokens * d_model))
    for first in range(0, n_tokens, block):
        targets = range(first, min(n_tokens, first + block))
        parts, resid = attention_row_contributions(resid_mid, resid_pre, pattern, value_out, factor, targets, n_tokens)
        attn[first : targets.stop] = parts.sum(-1).cpu().numpy()
        resid_attn[first : targets.stop] = resid.cpu().numpy()
        target, source, head = (parts > MIN_THRESHOLD).nonzero().unbind(1)
        targets_kept.append((target + first).cpu().numpy().astype(np.int32))
        sources_kept.append(source.cpu().numpy().astype(np.int32))
        heads_kept.append(head.cpu().numpy().astype(np.int16))
        values_kept.append(parts[target, source, head].cpu().numpy().astype(np.float32))
    mlp, resid_mlp = _pair_contributions(resid_mid + mlp_out, mlp_out, resid_mid)
    return LayerContributions(attn, resid_attn, mlp.cpu().numpy(), resid_mlp.cpu().numpy(),
                              np.concatenate(targets_kept), np.concatenate(sources_kept),
                              np.concatenate(heads_kept), np.concatenate(values_kept))


def run_contributions(lm: LoadedModel, run: Run) -> Contributions:
    require_causal(lm)
    with torch.inference_mode():
        layers = [layer_contributions(lm, run, layer) for layer in range(lm.info.n_layers)]
    return Contributions(lm.model_id, list(run.tokens), lm.info.n_heads, layers)


def contributions(runtime: Runtime, model_id: str, text: str) -> Contributions:
    """The contributions of ``text`` (memoised per run: a threshold change is a lookup and a re-prune)."""
    lm = runtime.model(model_id)
    require_causal(lm)
    run = runtime.run(model_id, text, circuit_sites(lm.info.n_layers))
    memo = runtime.memo("circuits-contributions", 8)
    return memo.get_or_compute((model_id, run.key), lambda: run_contributions(lm, run))


@dataclass
class GraphEdge:
    source: str
    target: str
    weight: float
    kind: str  # "attn" (heads, incl. the residual when source = target), "mlp", "resid"
    layer: int


@dataclass
class ContributionGraph:
    """The part of the contribution graph that reaches the chosen token's output above the threshold."""

    model_id: str
    tokens: list[str]
    n_layers: int
    position: int
    threshold: float
    renormalize: bool
    nodes: list[str]
    edges: list[GraphEdge]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "tokens": self.tokens, "n_layers": self.n_layers,
                "position": self.position, "threshold": self.threshold, "renormalize": self.renormalize,
                "nodes": self.nodes, "edges": [e.__dict__ for e in self.edges]}


def _below(layer: int, token: int) -> str:
    return f"I{layer - 1}_{token}" if layer > 0 else f"X0_{token}"


def layer_edges(lc: LayerContributions, threshold: float, renormalize: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """(attention edges {target: {source: weight}}, MLP weights [T], residual-after-attention weights [T]) of
    one layer with LLM-TT's threshold rule (renormalised first when asked)."""
    n_tokens = len(lc.mlp)
    if renormalize:
        keep = lc.heads_value > threshold
        resid = np.where(lc.resid_attn > threshold, lc.resid_attn, 0.0)
        denom = resid + np.bincount(lc.heads_target[keep], lc.heads_value[keep], minlength=n_tokens)
        denom = np.where(denom > 0, denom, 1.0)
        edges: dict[int, dict[int, float]] = {}
        for t, s, v in zip(lc.heads_target[keep], lc.heads_source[keep], lc.heads_value[keep], strict=True):
            row = edges.setdefault(int(t), {})
            row[int(s)] = row.get(int(s), 0.0) + float(v) / float(denom[t])
        for t in range(n_tokens):
            if resid[t] > 0:
                row = edges.setdefault(t, {})
                row[t] = row.get(t, 0.0) + float(resid[t] / denom[t])
        mlp = np.where(lc.mlp > threshold, lc.mlp, 0.0)
        res = np.where(lc.resid_mlp > threshold, lc.resid_mlp, 0.0)
        total = np.where(mlp + res > 0, mlp + res, 1.0)
        return edges, mlp / total, res / total
    merged = lc.attn + np.diag(lc.resid_attn)
    edges = {}
    for t, s in zip(*np.nonzero(merged > threshold), strict=True):
        edges.setdefault(int(t), {})[int(s)] = float(merged[t, s])
    return edges, lc.mlp, lc.resid_mlp


def prune_graph(contrib: Contributions, position: Any, threshold: Any = DEFAULT_THRESHOLD,
                renormalize: Any = True) -> ContributionGraph:
    """Edges above ``threshold`` reachable backwards from the output of ``position`` (no model run)."""
    n_tokens, n_layers = len(contrib.tokens), len(contrib.layers)
    pos = parse_int(n_tokens - 1 if position in (None, "") else position, "Position", 0, n_tokens - 1,
                    field="circuits-position")
    thr = parse_float(threshold, "Threshold", MIN_THRESHOLD, MAX_THRESHOLD, field="circuits-threshold")
    renorm = parse_bool(renormalize, "Renormalize", default=True)
    reach_out = {pos}  # I{l}_t reachable
    nodes = {f"I{n_layers - 1}_{pos}"}
    edges: list[GraphEdge] = []
    for layer in range(n_layers - 1, -1, -1):
        attn_edges, mlp, resid = layer_edges(contrib.layers[layer], thr, renorm)
        reach_mid = set()
        for t in sorted(reach_out):
            if mlp[t] > thr:
                edges += [GraphEdge(f"M{layer}_{t}", f"I{layer}_{t}", float(mlp[t]), "mlp", layer),
                          GraphEdge(f"A{layer}_{t}", f"M{layer}_{t}", float(mlp[t]), "mlp", layer)]
                nodes |= {f"M{layer}_{t}", f"A{layer}_{t}"}
                reach_mid.add(t)
            if resid[t] > thr:
                edges.append(GraphEdge(f"A{layer}_{t}", f"I{layer}_{t}", float(resid[t]), "resid", layer))
                nodes.add(f"A{layer}_{t}")
                reach_mid.add(t)
        reach_out = set()
        for t in sorted(reach_mid):
            for s, weight in sorted(attn_edges.get(t, {}).items()):
                if weight > thr:
                    edges.append(GraphEdge(_below(layer, s), f"A{layer}_{t}", weight, "attn", layer))
                    nodes.add(_below(layer, s))
                    reach_out.add(s)
    return ContributionGraph(contrib.model_id, contrib.tokens, n_layers, pos, thr, renorm, sorted(nodes), edges)


def contribution_graph(runtime: Runtime, model_id: str, text: str, position: Any = None,
                       threshold: Any = DEFAULT_THRESHOLD, renormalize: Any = True) -> ContributionGraph:
    return prune_graph(contributions(runtime, model_id, text), position, threshold, renormalize)


def edge_heads(lm: LoadedModel, run: Run, layer: int, target: int) -> np.ndarray:
    """Every head's contribution [T_sources, H] to the attention update of ``target`` at ``layer`` (recomputed
    for this one row from the cached run; the page's click on an edge)."""
    pattern, value_out, factor = _head_terms(lm, run, layer)
    resid_pre = run.act(f"blocks.{layer}.hook_resid_pre").float()
    resid_mid = resid_pre + run.act(f"blocks.{layer}.hook_attn_out").float()
    with torch.inference_mode():
        parts, _resid = attention_row_contributions(resid_mid, resid_pre, pattern, value_out, factor,
                                                    range(target, target + 1), run.n_tokens)
    return parts[0].cpu().numpy()
