"""The one logit readout against HF's own final norm + unembedding, and the token decoder's byte pieces."""

from __future__ import annotations

import pytest
import torch

from analysis.readout import final_gain, logit_effects, logit_readout, top_token_ids
from analysis.sites import arch_for, get_module
from tests.tiny_models import tiny_model


@pytest.mark.parametrize("arch", ["llama", "gemma", "gemma2", "gemma3", "gpt_neox", "gpt2"])
def test_logit_effects_equal_hf_norm_then_unembed(arch):
    """W_U (gain * d) equals HF's final norm then head on d, rescaled by the norm's own 1/rms (and with the
    norm's bias removed): so the Gemma ``1 + w`` convention is read off HF's module, not assumed."""
    lm = tiny_model(arch, seed=3)
    norm = get_module(lm.model, arch_for(lm.model).final_norm)
    with torch.no_grad():
        norm.weight.normal_(0.0, 0.5)  # Gemma inits w = 0 (gain 1): randomise so the convention matters
        if getattr(norm, "bias", None) is not None:
            norm.bias.normal_()
    directions = torch.randn(4, lm.info.d_model)
    ours = logit_effects(lm, directions)
    head = lm.model.get_output_embeddings()
    with torch.no_grad():
        centered = directions - directions.mean(-1, keepdim=True) if isinstance(norm, torch.nn.LayerNorm) else directions
        eps = getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None)
        scale = torch.sqrt(centered.pow(2).mean(-1, keepdim=True) + eps)
        normed = norm(centered)
        if getattr(norm, "bias", None) is not None:
            normed = normed - norm.bias
        reference = head(normed * scale)
        if head.bias is not None:
            reference = reference - head.bias
    if isinstance(norm, torch.nn.LayerNorm):  # LayerNorm centres the direction; the readout does not
        ours = logit_effects(lm, centered)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_gemma_gain_is_one_plus_weight_and_llama_the_weight():
    gemma, llama = tiny_model("gemma", seed=1), tiny_model("llama", seed=1)
    for lm, offset in [(gemma, 1.0), (llama, 0.0)]:
        norm = get_module(lm.model, arch_for(lm.model).final_norm)
        with torch.no_grad():
            norm.weight.fill_(0.25)
        assert torch.allclose(final_gain(lm), torch.full((lm.info.d_model,), 0.25 + offset))


def test_readout_top_and_bottom_tokens_are_sorted_extremes():
    lm = tiny_model("llama", seed=2)
    direction = torch.randn(lm.info.d_model)
    effects = logit_effects(lm, direction)
    out = logit_readout(lm, direction, k=5)
    assert [s.token_id for s in out.positive] == torch.topk(effects, 5).indices.tolist()
    assert [s.token_id for s in out.negative] == torch.topk(-effects, 5).indices.tolist()
    assert out.positive[0].logit == pytest.approx(float(effects.max()), rel=1e-5)
    assert out.negative[0].logit == pytest.approx(float(effects.min()), rel=1e-5)
    many = torch.randn(7, lm.info.d_model)
    ids = top_token_ids(lm, many, k=3, chunk=2)
    assert ids.tolist() == torch.topk(logit_effects(lm, many), 3, dim=1).indices.tolist()


def test_wrong_width_and_encoders_are_clear_errors():
    from analysis.errors import InputError

    with pytest.raises(InputError, match="has 5 dimensions; tiny-llama-seed2's unembedding reads 32"):
        logit_effects(tiny_model("llama", seed=2), torch.randn(5))
    with pytest.raises(InputError, match="no unembedding"):
        logit_effects(tiny_model("bert"), torch.randn(32))


def test_decoder_shows_dangling_bytes_not_replacement_chars(smollm2):
    """A byte-level BPE token holding part of a multi-byte character shows the byte as <0xNN>, never U+FFFD;
    whole characters stay text and the bytes of all pieces rebuild the original string."""
    text = "naïve café 😀 日本語 — “quotes”"
    ids = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = smollm2.decode(ids)
    assert len(pieces) == len(ids) and all("\ufffd" not in p for p in pieces)
    assert any(p.startswith("<0x") or "<0x" in p for p in pieces), pieces  # the emoji splits into bytes
    rebuilt = b""
    import re

    for piece in pieces:
        for part in re.split(r"(<0x[0-9A-F]{2}>)", piece):
            rebuilt += bytes([int(part[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", part) else part.encode()
    assert rebuilt.decode("utf-8") == text
    assert smollm2.decode(smollm2.tokenizer(" the cat", add_special_tokens=False)["input_ids"]) == [" the", " cat"]


def test_hub_offline_needs_no_network_and_probes_once_with_a_short_timeout(monkeypatch):
    """With the offline switch no connection is tried; otherwise one connect with a <= 2 s timeout decides,
    and its answer is reused (no timing is measured here: the bound is the connect timeout itself)."""
    import socket

    from analysis import hub

    calls: list[float] = []

    def refuse(address, timeout=None):
        calls.append(timeout)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hub, "_probe", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_offline() and calls == []
    assert "offline mode is on (HF_HUB_OFFLINE)" in hub.offline_message("gpt2", "Use a local folder.")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert hub.hub_offline() and hub.hub_offline()
    assert len(calls) == 1 and 0 < calls[0] <= 2.0
    assert "unreachable" in hub.offline_message("gpt2", "Use a local folder.")
