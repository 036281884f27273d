"""Gemma 3 270M (real weights, the embedded GGUF converted once): every capture site against HF's own outputs.

The text is longer than Gemma 3's 512-token sliding window, so the local layers really mask keys that the
global layers see; both rotary bases (10k local, 1M global) are exercised through the q/k reconstruction.
"""

from __future__ import annotations

import math

import pytest
import torch

from analysis.capture import capture
from analysis.readout import logit_effects
from analysis.sites import arch_for, available_sites, get_module

SENTENCE = "The quick brown fox jumps over the lazy dog while the committee debates the budget. "


@pytest.fixture(scope="module")
def ids(gemma) -> torch.Tensor:
    tokens = gemma.tokenizer(SENTENCE * 40)["input_ids"][:600]
    assert len(tokens) == 600 > gemma.model.config.sliding_window
    return torch.tensor([tokens])


@pytest.fixture(scope="module")
def reference(gemma, ids):
    with torch.no_grad():
        return gemma.model(input_ids=ids, output_hidden_states=True, output_attentions=True, use_cache=False)


def _layer_kinds(gemma) -> tuple[int, int]:
    types = gemma.model.config.layer_types
    return types.index("sliding_attention"), types.index("full_attention")


def test_gemma3_shape_and_site_map(gemma):
    info, config = gemma.info, gemma.model.config
    assert (info.arch, info.n_layers, info.d_model, info.vocab_size) == ("gemma3_text", 18, 640, 262144)
    assert (info.n_heads, info.n_kv_heads, info.d_head) == (4, 1, 256)
    spec = arch_for(gemma.model)
    assert spec.family == "gemma3" and spec.q_norm and spec.k_norm
    sites = available_sites(spec, info.n_layers)
    for local in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "attn.hook_pattern", "attn.hook_rot_q",
                  "attn.hook_q", "mlp.hook_post", "hook_mlp_out", "hook_attn_out"):
        assert f"blocks.17.{local}" in sites
    assert config.layer_types.count("full_attention") == 3  # 5 local : 1 global
    bases = {kind: params["rope_theta"] for kind, params in config.rope_parameters.items()}
    assert bases == {"sliding_attention": 10_000.0, "full_attention": 1_000_000.0}


def test_gemma3_residual_stream_and_logits_equal_hf(gemma, ids, reference):
    n = gemma.info.n_layers
    sites = [f"blocks.{l}.hook_resid_pre" for l in (0, 6)] + [f"blocks.{l}.hook_resid_post" for l in (0, 5, 11, 16, 17)]
    result = capture(gemma, ids, sites)
    torch.testing.assert_close(result.logits, reference.logits, atol=2e-3, rtol=1e-4)
    # the embedding already carries Gemma's sqrt(d_model) scale
    embed = get_module(gemma.model, "model.embed_tokens").weight[ids[0]]
    torch.testing.assert_close(result.acts["blocks.0.hook_resid_pre"][0], embed * math.sqrt(640), atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(result.acts["blocks.0.hook_resid_pre"], reference.hidden_states[0], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(result.acts["blocks.6.hook_resid_pre"], reference.hidden_states[6], atol=1e-3, rtol=1e-5)
    for layer in (0, 5, 11, 16):
        torch.testing.assert_close(result.acts[f"blocks.{layer}.hook_resid_post"], reference.hidden_states[layer + 1],
                                   atol=1e-3, rtol=1e-5)
    norm = get_module(gemma.model, arch_for(gemma.model).final_norm)
    with torch.no_grad():
        torch.testing.assert_close(norm(result.acts[f"blocks.{n - 1}.hook_resid_post"]), reference.hidden_states[n],
                                   atol=1e-3, rtol=1e-5)


def test_gemma3_patterns_equal_hf_on_local_and_global_layers(gemma, ids, reference):
    local, global_ = _layer_kinds(gemma)
    window = gemma.model.config.sliding_window
    acts = capture(gemma, ids, [f"blocks.{l}.attn.hook_pattern" for l in (local, global_)]).acts
    for layer in (local, global_):
        torch.testing.assert_close(acts[f"blocks.{layer}.attn.hook_pattern"], reference.attentions[layer], atol=1e-5, rtol=0)
    last = ids.shape[1] - 1
    beyond = slice(0, last - window + 1)  # keys the last query cannot see on a local layer
    assert float(acts[f"blocks.{local}.attn.hook_pattern"][0, :, last, beyond].abs().max()) == 0.0
    assert float(acts[f"blocks.{global_}.attn.hook_pattern"][0, :, last, beyond].sum(-1).min()) > 0.0


def test_gemma3_rotated_queries_and_keys_reproduce_patterns(gemma, ids):
    """q/k after QK-norm and rotary (each layer's own base) give HF's pattern with Gemma's 1/sqrt(256) scale."""
    config = gemma.model.config
    t = ids.shape[1]
    for layer in _layer_kinds(gemma):
        names = [f"blocks.{layer}.attn.{s}" for s in ("hook_rot_q", "hook_rot_k", "hook_q", "hook_pattern")]
        acts = capture(gemma, ids, names).acts
        q, k = acts[names[0]][0], acts[names[1]][0].repeat_interleave(4, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) * config.query_pre_attn_scalar ** -0.5
        hidden = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        if config.layer_types[layer] == "sliding_attention":
            hidden |= torch.tril(torch.ones(t, t, dtype=torch.bool), -config.sliding_window)
        torch.testing.assert_close(scores.masked_fill(hidden, float("-inf")).softmax(-1), acts[names[3]][0],
                                   atol=1e-4, rtol=0)
        # hook_q is after QK-norm and before rotary: position 0 is unrotated, later ones differ
        torch.testing.assert_close(acts[names[2]][0, 0], q[0], atol=1e-5, rtol=0)
        assert not torch.allclose(acts[names[2]][0, 1:], q[1:], atol=1e-3)


def test_gemma3_rotary_bases_differ_between_local_and_global(gemma, ids):
    """The same relative offset rotates a local layer's queries by base 10k and a global one's by 1M."""
    local, global_ = _layer_kinds(gemma)
    angles = {}
    for layer in (local, global_):
        names = [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_rot_q"]
        acts = capture(gemma, ids[:, :8], names).acts
        pre, rot = acts[names[0]][0, 5, 0], acts[names[1]][0, 5, 0]  # position 5, head 0
        half, pair = pre.shape[-1] // 2, 32
        # rotate_half convention: pairs (i, i + half) turn by position * base^(-2i/d_head)
        before = torch.atan2(pre[pair + half], pre[pair])
        after = torch.atan2(rot[pair + half], rot[pair])
        angles[layer] = float((after - before + math.pi) % (2 * math.pi) - math.pi)
    for layer, base in ((local, 10_000.0), (global_, 1_000_000.0)):
        expected = 5 * base ** (-2 * 32 / 256)
        assert angles[layer] == pytest.approx(expected, rel=1e-2, abs=1e-6)


def test_gemma3_mlp_and_attention_pieces_add_up(gemma, ids):
    layer = 5
    names = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "mlp.hook_post",
             "attn.hook_z"]
    acts = capture(gemma, ids[:, :64], [f"blocks.{layer}.{n}" for n in names]).acts
    a = {n: acts[f"blocks.{layer}.{n}"] for n in names}
    spec = arch_for(gemma.model)
    block = get_module(gemma.model, spec.layers)[layer]
    with torch.no_grad():
        mlp_out = block.post_feedforward_layernorm(get_module(block, spec.mlp_down)(a["mlp.hook_post"]))
        attn_out = block.post_attention_layernorm(get_module(block, spec.o)(a["attn.hook_z"].flatten(-2)))
    torch.testing.assert_close(mlp_out, a["hook_mlp_out"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(attn_out, a["hook_attn_out"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(a["hook_resid_pre"] + a["hook_attn_out"], a["hook_resid_mid"], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(a["hook_resid_mid"] + a["hook_mlp_out"], a["hook_resid_post"], atol=1e-3, rtol=1e-5)


def test_gemma3_logit_readout_equals_hf_head(gemma, ids, reference):
    """The one readout (final RMSNorm's 1 + w gain, then the tied 262k unembedding) on the last residual."""
    n = gemma.info.n_layers
    last = capture(gemma, ids[:, :16], [f"blocks.{n - 1}.hook_resid_post"]).acts[f"blocks.{n - 1}.hook_resid_post"][0]
    norm = get_module(gemma.model, arch_for(gemma.model).final_norm)
    eps = norm.eps
    rms = torch.sqrt(last.pow(2).mean(-1, keepdim=True) + eps)
    ours = logit_effects(gemma, last / rms)
    torch.testing.assert_close(ours, reference.logits[0, :16], atol=2e-2, rtol=1e-4)
    assert gemma.model.config.final_logit_softcapping is None  # Gemma 3 drops Gemma 2's soft-cap
