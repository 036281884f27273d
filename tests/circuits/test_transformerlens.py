"""DLA per head and per MLP equals TransformerLens's own decomposition on the same weights.

TransformerLens re-implements each architecture from converted weights (its own forward, not HF's hooks),
so this is an independent reference: ``HookedTransformer`` built from the HF model (``fold_ln`` so its
``W_U`` holds the final norm's gain; no other weight processing), ``run_with_cache``, then
``stack_head_results`` and ``logit_attrs`` (which applies the final norm's frozen scale). It loads Llama (SmolLM2
and a tiny Llama with grouped-query attention), Mistral, Qwen2, GPT-2 and GPT-NeoX from a local folder; for
Gemma 1-3 its config conversion raises ("GemmaForCausalLM is not currently supported"), so those are covered
by completeness (tests/circuits/test_attribution.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from analysis.circuits import attribute_run
from tests.circuits.common import tiny_ids, tiny_run
from tests.tiny_models import tiny_model


def hooked_transformer(hf_model, folder: Path):
    from transformer_lens import HookedTransformer
    from transformer_lens import loading_from_pretrained as loading

    cfg = loading.get_pretrained_model_config(str(folder), fold_ln=True, device="cpu", dtype=torch.float32)
    state = loading.get_pretrained_state_dict(str(folder), cfg, hf_model=hf_model, dtype=torch.float32)
    cfg.tokenizer_name = None  # token ids go in directly
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False, refactor_factored_attn_matrices=False)
    return model.eval()


def transformerlens_dla(model, ids: list[int], position: int, token: int, contrast: int | None = None):
    _logits, cache = model.run_with_cache(torch.tensor([ids]))
    heads = cache.stack_head_results(layer=-1, pos_slice=position)  # [L*H, 1, d]; logit_attrs applies the norm
    mlps = torch.stack([cache[f"blocks.{layer}.hook_mlp_out"][:, position] for layer in range(model.cfg.n_layers)])
    tokens = torch.tensor([token])
    wrong = None if contrast is None else torch.tensor([contrast])
    head_attr = cache.logit_attrs(heads, tokens=tokens, incorrect_tokens=wrong, pos_slice=position)
    mlp_attr = cache.logit_attrs(mlps, tokens=tokens, incorrect_tokens=wrong, pos_slice=position)
    return head_attr.detach().reshape(model.cfg.n_layers, model.cfg.n_heads), mlp_attr.detach().reshape(-1)


def _compare(lm, run, model, position, token, contrast=None):
    ours = attribute_run(lm, run, position, f"#{token}", None if contrast is None else f"#{contrast}")
    heads, mlps = transformerlens_dla(model, run.token_ids, position, token, contrast)
    scale = max(1.0, float(abs(heads).max()), float(abs(mlps).max()))
    torch.testing.assert_close(torch.tensor(ours.heads, dtype=torch.float32), heads.float(), rtol=1e-4,
                               atol=1e-4 * scale)
    torch.testing.assert_close(torch.tensor(ours.mlp, dtype=torch.float32), mlps.float(), rtol=1e-4,
                               atol=1e-4 * scale)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "mistral", "qwen2"])
def test_tiny_dla_equals_transformerlens(arch):
    lm = tiny_model(arch)
    folder = Path(tempfile.mkdtemp(prefix="tl-reference-"))  # no architecture name in the path (TL reads it)
    try:
        lm.model.config.architectures = [type(lm.model).__name__]
        if arch == "gpt2":
            lm.model.config.n_ctx = lm.model.config.n_positions  # TransformerLens reads GPT-2's old name
        lm.model.save_pretrained(folder)
        model = hooked_transformer(lm.model, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    run = tiny_run(lm, tiny_ids(9))
    for position in (3, 8):
        _compare(lm, run, model, position, 7)
        _compare(lm, run, model, position, 7, contrast=30)


def test_smollm2_dla_equals_transformerlens(runtime, smollm2):
    from analysis.circuits import circuit_sites

    folder = runtime.settings.cache_path / "embedded" / "smollm2-135m-instruct-fp16"
    model = hooked_transformer(smollm2.model, folder)
    text = "The Eiffel Tower is in the city of"
    run = runtime.run(smollm2.model_id, text, circuit_sites(smollm2.info.n_layers))
    paris = smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    london = smollm2.tokenizer(" London", add_special_tokens=False)["input_ids"][0]
    last = run.n_tokens - 1
    _compare(smollm2, run, model, last, paris)
    _compare(smollm2, run, model, last, paris, contrast=london)
    _compare(smollm2, run, model, 3, run.token_ids[4])
