"""Captured sites equal HF's own outputs, on tiny models of every architecture."""

from __future__ import annotations

import pytest
import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.sites import arch_for, available_sites, get_module
from tests.tiny_models import ARCH_NAMES, VOCAB, tiny_model

ATOL = 1e-5


@pytest.fixture(scope="module", params=ARCH_NAMES)
def tiny(request):
    return tiny_model(request.param)


def _ids(batch: int = 2, length: int = 11) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


def _reference(lm, ids):
    kwargs = {"use_cache": False} if lm.info.is_causal else {}
    return lm.model(input_ids=ids, output_hidden_states=True, output_attentions=True, **kwargs)


def test_all_sites_capture_and_logits_equal_plain_forward(tiny):
    ids = _ids()
    result = capture(tiny, ids, "all")
    spec = arch_for(tiny.model)
    assert set(result.acts) == set(available_sites(spec, tiny.info.n_layers))
    plain = tiny.model(input_ids=ids)
    if tiny.info.is_causal:
        torch.testing.assert_close(result.logits, plain.logits, atol=ATOL, rtol=0)
    else:
        assert result.logits is None


def test_resid_post_equals_hidden_states(tiny):
    ids = _ids()
    ref = _reference(tiny, ids)
    sites = [f"blocks.{l}.hook_resid_post" for l in range(tiny.info.n_layers)]
    sites += [f"blocks.{l}.hook_resid_pre" for l in range(tiny.info.n_layers)]
    acts = capture(tiny, ids, sites).acts
    n = tiny.info.n_layers
    for layer in range(n):
        torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_pre"], ref.hidden_states[layer], atol=ATOL, rtol=0)
    for layer in range(n - 1):
        torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_post"], ref.hidden_states[layer + 1], atol=ATOL, rtol=0)
    last = acts[f"blocks.{n - 1}.hook_resid_post"]
    spec = arch_for(tiny.model)
    if spec.final_norm:  # HF's last hidden state is after the final norm
        norm = get_module(tiny.model, spec.final_norm)
        torch.testing.assert_close(norm(last), ref.hidden_states[n], atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(last, ref.hidden_states[n], atol=ATOL, rtol=0)


def test_patterns_equal_output_attentions(tiny):
    ids = _ids()
    ref = _reference(tiny, ids)
    sites = [f"blocks.{l}.attn.hook_pattern" for l in range(tiny.info.n_layers)]
    acts = capture(tiny, ids, sites).acts
    for layer in range(tiny.info.n_layers):
        pattern = acts[f"blocks.{layer}.attn.hook_pattern"]
        torch.testing.assert_close(pattern, ref.attentions[layer], atol=ATOL, rtol=0)
        torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-5, rtol=0)


def test_queries_and_keys_reproduce_attention_scores(tiny):
    ids = _ids()
    spec = arch_for(tiny.model)
    q_site, k_site = ("attn.hook_rot_q", "attn.hook_rot_k") if spec.rotary else ("attn.hook_q", "attn.hook_k")
    layer = 1
    acts = capture(tiny, ids, [f"blocks.{layer}.{q_site}", f"blocks.{layer}.{k_site}", f"blocks.{layer}.attn.hook_pattern"]).acts
    q, k = acts[f"blocks.{layer}.{q_site}"], acts[f"blocks.{layer}.{k_site}"]  # [B, T, H, dh]
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)  # grouped-query attention
    attn = get_module(get_module(tiny.model, spec.layers)[layer], spec.attn)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * attn.scaling
    if tiny.info.is_causal:
        t = ids.shape[1]
        hidden = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        types, window = getattr(tiny.model.config, "layer_types", None), getattr(tiny.model.config, "sliding_window", None)
        if types and types[layer] == "sliding_attention" and window and window < t:  # Gemma 3's local layers
            hidden |= torch.tril(torch.ones(t, t, dtype=torch.bool), -window)
        scores = scores.masked_fill(hidden, float("-inf"))
    torch.testing.assert_close(scores.softmax(-1), acts[f"blocks.{layer}.attn.hook_pattern"], atol=ATOL, rtol=0)
    if spec.rotary:  # rotary really changes q (so the three DeepPeek modes differ)
        q_pre = capture(tiny, ids, [f"blocks.{layer}.attn.hook_q"]).acts[f"blocks.{layer}.attn.hook_q"]
        assert not torch.allclose(q_pre[:, 1:], acts[f"blocks.{layer}.{q_site}"][:, 1:])
        torch.testing.assert_close(q_pre[:, 0], acts[f"blocks.{layer}.{q_site}"][:, 0], atol=ATOL, rtol=0)


def test_z_mlp_and_residual_pieces_add_up(tiny):
    ids = _ids()
    spec = arch_for(tiny.model)
    layer = 2
    names = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
             "mlp.hook_post", "attn.hook_z"]
    acts = capture(tiny, ids, [f"blocks.{layer}.{n}" for n in names]).acts
    a = {n: acts[f"blocks.{layer}.{n}"] for n in names}
    block = get_module(tiny.model, spec.layers)[layer]
    # MLP neurons through the down projection give the MLP output (no dropout in eval).
    mlp_out = get_module(block, spec.mlp_down)(a["mlp.hook_post"])
    if spec.family in ("gemma2", "gemma3"):  # Gemma 2/3 normalise the MLP output before adding it
        mlp_out = get_module(block, "post_feedforward_layernorm")(mlp_out)
    torch.testing.assert_close(mlp_out, a["hook_mlp_out"], atol=ATOL, rtol=0)
    z = a["attn.hook_z"].flatten(-2)
    o = get_module(block, spec.o)(z)
    if spec.family == "bert":
        return
    if spec.family in ("gemma2", "gemma3"):
        o = get_module(block, "post_attention_layernorm")(o)
    torch.testing.assert_close(o, a["hook_attn_out"], atol=ATOL, rtol=0)
    torch.testing.assert_close(a["hook_resid_mid"] + a["hook_mlp_out"], a["hook_resid_post"], atol=ATOL, rtol=0)
    torch.testing.assert_close(a["hook_resid_pre"] + a["hook_attn_out"], a["hook_resid_mid"], atol=ATOL, rtol=0)


def test_only_requested_sites_are_kept(tiny):
    acts = capture(tiny, _ids(), ["blocks.0.hook_resid_post"]).acts
    assert list(acts) == ["blocks.0.hook_resid_post"]


def test_edit_changes_downstream_and_stop_early(tiny):
    ids = _ids()
    site = "blocks.0.hook_resid_post"
    base = capture(tiny, ids, ["blocks.2.hook_resid_post"]).acts["blocks.2.hook_resid_post"]
    zeroed = capture(tiny, ids, [site, "blocks.2.hook_resid_post"], edits={site: torch.zeros_like})
    assert torch.count_nonzero(zeroed.acts[site]) == 0
    assert not torch.allclose(zeroed.acts["blocks.2.hook_resid_post"], base)
    early = capture(tiny, ids, ["blocks.1.hook_resid_post"], stop_early=True)
    full = capture(tiny, ids, ["blocks.1.hook_resid_post"])
    assert early.logits is None
    torch.testing.assert_close(early.acts["blocks.1.hook_resid_post"], full.acts["blocks.1.hook_resid_post"])


def test_bad_sites_are_clear_errors(tiny):
    with pytest.raises(InputError, match="out of range"):
        capture(tiny, _ids(), ["blocks.99.hook_resid_post"])
    with pytest.raises(InputError, match="Unknown site"):
        capture(tiny, _ids(), ["blocks.0.hook_nonsense"])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "gemma3"])
def test_resumed_pass_and_kept_keys_continue_the_full_pass(arch):
    """A pass resumed at a block from the stream entering it, and a pass continuing the kept keys and
    values of the first positions, both give the full pass's logits; nothing below the resumed block runs."""
    lm = tiny_model(arch)
    ids = torch.randint(3, VOCAB, (1, 9), generator=torch.Generator().manual_seed(7))
    full = capture(lm, ids, ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"], keep_cache=True)
    resumed = capture(lm, ids, ["blocks.2.hook_resid_pre"], resume=(1, full.acts["blocks.1.hook_resid_pre"]))
    torch.testing.assert_close(resumed.logits, full.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(resumed.acts["blocks.2.hook_resid_pre"], full.acts["blocks.2.hook_resid_pre"])
    assert full.cache.layers[0].keys.shape[2] == 9
    from transformers import DynamicCache

    prefix = DynamicCache(ddp_cache_data=[(layer.keys[:, :, :5], layer.values[:, :, :5]) for layer in full.cache.layers])
    continued = capture(lm, ids[:, 5:], [], past=prefix)
    torch.testing.assert_close(continued.logits[0], full.logits[0, 5:], atol=1e-5, rtol=1e-4)
    with pytest.raises(InputError, match="no site below it: blocks.0.hook_resid_post"):
        capture(lm, ids, ["blocks.0.hook_resid_post"], resume=(1, full.acts["blocks.1.hook_resid_pre"]))
    with pytest.raises(InputError, match="resumes at a layer in"):
        capture(lm, ids, [], resume=(lm.info.n_layers, full.acts["blocks.1.hook_resid_pre"]))
    calls = []
    handle = get_module(lm.model, arch_for(lm.model).layers)[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        capture(lm, ids, [], resume=(1, full.acts["blocks.1.hook_resid_pre"]))
        assert calls == []  # block 0 did not run
        capture(lm, ids, [])
        assert calls == [1]
    finally:
        handle.remove()
