"""Contribution graph: streamed values equal a direct dense computation of LLM-TT's formula; pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.circuits.decompose import FrozenNorm, head_out_weights, sandwich_norm
from analysis.circuits.graph import (
    BLOCK_FLOATS,
    edge_heads,
    prune_graph,
    run_contributions,
)
from analysis.errors import InputError
from tests.circuits.common import CAUSAL_ARCHS, tiny_ids, tiny_run
from tests.tiny_models import tiny_model


def dense_contributions(parts: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """LLM-TT's get_contributions written out on the dense tensor: parts [k, ..., d], whole [..., d]."""
    distance = torch.nn.functional.pairwise_distance(parts, whole.expand(parts.shape), p=1)
    proximity = (torch.norm(whole, p=1, dim=-1) - distance).clip(min=1e-5)
    return proximity / proximity.sum(dim=0, keepdim=True)


def dense_layer(lm, run, layer):
    """[T, T, H] head parts and [T] residual part, from the full [T, T, H, d] tensor (short prompts only)."""
    n_heads, group = lm.info.n_heads, lm.info.n_heads // lm.info.n_kv_heads
    v = run.act(f"blocks.{layer}.attn.hook_v").float().repeat_interleave(group, dim=1)
    pattern = run.act(f"blocks.{layer}.attn.hook_pattern").float()
    w_o = head_out_weights(lm, layer)
    decomposed = torch.einsum("hps,shd,hde->pshe", pattern, v, w_o)  # [T, T, H, d]
    post = sandwich_norm(lm, layer, "attn")
    if post is not None:
        frozen = FrozenNorm.of(post)
        o = run.act(f"blocks.{layer}.attn.hook_z").float().flatten(1) @ w_o.reshape(-1, w_o.shape[-1])
        decomposed = decomposed * (frozen.gain / frozen.scale(o))[:, None, None, :]
    pre = run.act(f"blocks.{layer}.hook_resid_pre").float()
    mid = pre + run.act(f"blocks.{layer}.hook_attn_out").float()
    t = pre.shape[0]
    parts = decomposed.permute(1, 2, 0, 3).reshape(t * n_heads, t, -1)  # [(s h), p, d]
    c = dense_contributions(torch.cat([parts, pre[None]]), mid)
    return c[:-1].reshape(t, n_heads, t).permute(2, 0, 1), c[-1]


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_streamed_contributions_equal_the_dense_formula(arch, monkeypatch):
    lm = tiny_model(arch)
    run = tiny_run(lm, tiny_ids(10))
    monkeypatch.setattr("analysis.circuits.graph.BLOCK_FLOATS", 3 * 10 * lm.info.d_model)  # blocks of 3 targets
    contrib = run_contributions(lm, run)
    for layer in range(lm.info.n_layers):
        heads, resid = dense_layer(lm, run, layer)
        lc = contrib.layers[layer]
        np.testing.assert_allclose(lc.attn, heads.sum(-1).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lc.resid_attn, resid.numpy(), rtol=1e-4, atol=1e-5)
        kept = heads.numpy() > 0.01
        assert len(lc.heads_value) == kept.sum()
        np.testing.assert_allclose(lc.heads_value, heads.numpy()[lc.heads_target, lc.heads_source, lc.heads_head],
                                   rtol=1e-4)
        mid = run.act(f"blocks.{layer}.hook_resid_pre") + run.act(f"blocks.{layer}.hook_attn_out")
        mlp = run.act(f"blocks.{layer}.hook_mlp_out")
        pair = dense_contributions(torch.stack([mlp, mid]), mid + mlp)
        np.testing.assert_allclose(lc.mlp, pair[0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lc.resid_attn.sum() + lc.attn.sum(), 10, rtol=1e-4)  # each row sums to 1
    np.testing.assert_allclose(edge_heads(lm, run, 1, 7), dense_layer(lm, run, 1)[0][7].numpy(), rtol=1e-4, atol=1e-5)
    assert BLOCK_FLOATS > 0


def test_pruning_follows_llm_tt_rules():
    lm = tiny_model("llama")
    run = tiny_run(lm, tiny_ids(10))
    contrib = run_contributions(lm, run)
    last = lm.info.n_layers - 1
    for renormalize in (False, True):
        low = prune_graph(contrib, 9, 0.01, renormalize)
        high = prune_graph(contrib, 9, 0.2, renormalize)
        assert f"I{last}_9" in low.nodes
        assert {(e.source, e.target) for e in high.edges} <= {(e.source, e.target) for e in low.edges}
        assert all(e.weight > t.threshold for t in (low, high) for e in t.edges)
        # every kept edge's target is reachable: it is the output node or the source of another kept edge
        sources = {e.source for e in low.edges} | {f"I{last}_9"}
        assert all(e.target in sources for e in low.edges)
        assert all(int(e.source.split("_")[1]) <= int(e.target.split("_")[1]) for e in low.edges)  # causal
        assert len(high.edges) < len(low.edges)
    # without renormalisation an attention edge is the heads' sum (+ the residual on the diagonal)
    graph = prune_graph(contrib, 9, 0.01, False)
    for edge in graph.edges:
        if edge.kind == "attn":
            target, source = int(edge.target.split("_")[1]), int(edge.source.split("_")[1])
            lc = contrib.layers[edge.layer]
            expected = lc.attn[target, source] + (lc.resid_attn[target] if target == source else 0)
            assert edge.weight == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(InputError, match=">= 0.01 and <= 0.5"):
        prune_graph(contrib, 9, 0.001)
    with pytest.raises(InputError, match="0 to 9"):
        prune_graph(contrib, 10, 0.04)
