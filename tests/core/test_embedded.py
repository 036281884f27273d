"""The embedded models load offline and our capture matches HF on them."""

from __future__ import annotations

import torch

from analysis.capture import capture, run_text
from analysis.embedded import minilm_dir, smollm2_dir, smollm2_gguf_path
from analysis.sites import get_module

TEXT = "In the beginning was the Word, and the Word was with God. The cat sat on the mat."


def test_embedded_files_exist_offline(settings):
    assert smollm2_gguf_path().stat().st_size > 50_000_000
    directory = smollm2_dir(settings.cache_dir)
    assert (directory / "model.safetensors").is_file() and (directory / "config.json").is_file()
    assert (minilm_dir() / "model.safetensors").is_file()


def test_smollm2_shape(smollm2):
    info = smollm2.info
    assert (info.arch, info.n_layers, info.d_model, info.vocab_size) == ("llama", 30, 576, 49152)
    assert (info.n_heads, info.n_kv_heads, info.d_head, info.d_mlp) == (9, 3, 64, 1536)
    assert info.dtype == "float32" and info.device == "cpu"


def test_smollm2_capture_matches_hf(smollm2):
    ids = torch.tensor([smollm2.tokenizer(TEXT)["input_ids"]])
    ref = smollm2.model(input_ids=ids, output_hidden_states=True, output_attentions=True, use_cache=False)
    sites = [f"blocks.{l}.hook_resid_post" for l in (0, 14, 28, 29)] + ["blocks.14.attn.hook_pattern",
             "blocks.14.attn.hook_rot_q", "blocks.14.attn.hook_rot_k", "blocks.14.attn.hook_q", "blocks.14.attn.hook_k"]
    result = capture(smollm2, ids, sites)
    torch.testing.assert_close(result.logits, ref.logits, atol=1e-4, rtol=0)
    for layer in (0, 14, 28):
        torch.testing.assert_close(result.acts[f"blocks.{layer}.hook_resid_post"], ref.hidden_states[layer + 1], atol=1e-4, rtol=0)
    norm = get_module(smollm2.model, "model.norm")
    torch.testing.assert_close(norm(result.acts["blocks.29.hook_resid_post"]), ref.hidden_states[30], atol=1e-4, rtol=0)
    pattern = result.acts["blocks.14.attn.hook_pattern"]
    torch.testing.assert_close(pattern, ref.attentions[14], atol=1e-5, rtol=0)
    q = result.acts["blocks.14.attn.hook_rot_q"][0]
    k = result.acts["blocks.14.attn.hook_rot_k"][0].repeat_interleave(3, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / 8.0
    t = ids.shape[1]
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    torch.testing.assert_close(scores.softmax(-1), pattern[0], atol=1e-5, rtol=0)


def test_minilm_capture_matches_hf(minilm):
    enc = minilm.tokenizer([TEXT, "short one"], padding=True, return_tensors="pt")
    ref = minilm.model(**enc, output_hidden_states=True, output_attentions=True)
    sites = [f"blocks.{l}.hook_resid_post" for l in range(6)] + ["blocks.3.attn.hook_pattern"]
    result = capture(minilm, enc["input_ids"], sites, attention_mask=enc["attention_mask"])
    for layer in range(6):
        torch.testing.assert_close(result.acts[f"blocks.{layer}.hook_resid_post"], ref.hidden_states[layer + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(result.acts["blocks.3.attn.hook_pattern"], ref.attentions[3], atol=1e-6, rtol=0)
    # padded keys get no attention in the short sequence
    n_real = int(enc["attention_mask"][1].sum())
    assert float(result.acts["blocks.3.attn.hook_pattern"][1, :, :, n_real:].abs().max()) < 1e-6


def test_run_text_tokens_roundtrip(smollm2):
    run = run_text(smollm2, TEXT, ["blocks.0.hook_resid_post"])
    assert "".join(run.tokens) == smollm2.tokenizer.decode(run.token_ids)
    assert run.logits.shape == (run.n_tokens, 49152)
    assert run.acts["blocks.0.hook_resid_post"].shape == (run.n_tokens, 576)
