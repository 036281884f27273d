"""Tokens tools on every architecture (tiny random models): attention recomputation vs HF's pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import analysis.tokens as T
from analysis.capture import Run, capture
from analysis.models import wrap_model
from analysis.tokens.attention import attention_values, attn_spec, head_values
from tests.tiny_models import ARCH_NAMES, VOCAB, tiny_model

N = 80  # longer than the tiny Mistral/Gemma2 sliding window (64)


def _run(lm, runtime=None) -> Run:
    from analysis.runtime import get_runtime

    ids = torch.randint(0, VOCAB, (1, N), generator=torch.Generator().manual_seed(1))
    kinds = tuple(k for k in T.SITE_KINDS if k != "hook_resid_mid" or lm.info.arch != "bert")
    cap = capture(lm, ids, T.page_sites(runtime or get_runtime(), lm, kinds), logits=lm.info.is_causal)
    acts = {k: v[0] for k, v in cap.acts.items()}
    return Run(model_id=lm.model_id, text="x", token_ids=ids[0].tolist(), tokens=[str(i) for i in ids[0].tolist()],
               logits=cap.logits[0].float() if cap.logits is not None else None, acts=acts, sites=frozenset(acts))


def _hf_patterns(lm, run: Run):
    with torch.inference_mode():
        return lm.model(torch.tensor([run.token_ids]), output_attentions=True).attentions


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_full_attention_matches_hf_pattern(name):
    lm = tiny_model(name)
    run = _run(lm)
    spec = attn_spec(lm)
    patterns = _hf_patterns(lm, run)
    for layer in range(lm.info.n_layers):
        for head in (0, lm.info.n_heads - 1):
            got = head_values(run, spec, layer, head, "full")
            np.testing.assert_allclose(got.numpy(), patterns[layer][0, head].numpy(), atol=2e-5,
                                       err_msg=f"{name} L{layer} H{head}")
    pos = N - 5
    row = attention_values(run, spec, 1, None, pos, "full", "from")
    ref = patterns[1][0, :, pos].mean(0)
    if spec.causal:
        np.testing.assert_allclose(row[: pos + 1].numpy(), ref[: pos + 1].numpy(), atol=2e-5)
    else:
        np.testing.assert_allclose(row.numpy(), ref.numpy(), atol=2e-5)


def test_gemma2_softcapping_and_window():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                       sliding_window=16, attn_logit_softcapping=2.0, final_logit_softcapping=None)
    cfg._attn_implementation = "eager"
    lm = wrap_model("tiny-gemma2-softcap", Gemma2ForCausalLM(cfg), tokenizer=None)
    run = _run(lm)
    spec = attn_spec(lm)
    assert spec.softcap == 2.0 and any(spec.windows)
    patterns = _hf_patterns(lm, run)
    for layer in range(2):
        np.testing.assert_allclose(head_values(run, spec, layer, 1, "full").numpy(), patterns[layer][0, 1].numpy(),
                                   atol=2e-5)


@pytest.mark.parametrize("name", ["gpt_neox", "gpt2", "bert"])
def test_every_tool_adapts_to_the_architecture(name, runtime):
    lm = tiny_model(name)
    run = _run(lm)
    tools = [t for t in T.TOOLS if (lm.info.is_causal or t not in ("predictions", "loss")) and t != "edit"]
    with pytest.raises(Exception, match="needs an edit list"):  # edit effects: tests/tokens/test_tokens.py
        T.compute_view(runtime, [run], lm, T.ViewRequest(tool="edit"))
    for tool in tools:
        for rope in ("full", "not_applied"):
            col = T.compute_view(runtime, [run], lm, T.ViewRequest(tool=tool, layer=2, head=3, pos=10, rope=rope,
                                                          kind="mlp.hook_post" if tool == "sum" else "hook_mlp_out"))
            assert len(col.values[0]) == N
            assert any(v is not None for v in col.values[0])
    if not lm.info.is_causal:
        with pytest.raises(Exception, match="encoder"):
            T.compute_view(runtime, [run], lm, T.ViewRequest(tool="predictions"))
    spec = attn_spec(lm)
    if not spec.rotary:  # no rotary: applied and not applied are the same scores
        a = head_values(run, spec, 1, 2, "applied")
        b = head_values(run, spec, 1, 2, "not_applied")
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
