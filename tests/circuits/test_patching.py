"""Activation patching: batched cells equal a hand-written single-patch HF hook, on every decoder."""

from __future__ import annotations

import pytest
import torch

from analysis.circuits.patching import CorruptedRun, Corruption, _noise_edit, batches, metric_values, noise, patch_layer
from analysis.sites import arch_for, base_model_root, get_module
from tests.circuits.common import CAUSAL_ARCHS, tiny_ids, tiny_run
from tests.tiny_models import tiny_model


def hook_patched_logits(lm, ids, site, layer, position, clean_value, noise_at=None):
    """One forward of the full HF model with one plain torch hook: the reference for one grid cell."""
    spec = arch_for(lm.model)
    block = get_module(base_model_root(lm.model, spec), spec.layers)[layer]
    handles = []
    if noise_at is not None:
        positions, delta = noise_at
        embed = get_module(base_model_root(lm.model, spec), spec.embed)

        def add_noise(_m, _i, out):
            out = out.clone()
            out[:, list(positions)] += delta
            return out

        handles.append(embed.register_forward_hook(add_noise))
    if site == "resid":
        def pre(_m, args, kwargs):
            hidden = args[0].clone()
            hidden[:, position] = clean_value
            return (hidden, *args[1:]), kwargs

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
    else:
        module = get_module(block, spec.attn_out_module if site == "attn" else spec.mlp_out_module)

        def post(_m, _i, out):
            first = out[0] if isinstance(out, tuple) else out
            first = first.clone()
            first[:, position] = clean_value
            return (first, *out[1:]) if isinstance(out, tuple) else first

        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad():
            return lm.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_batched_cells_equal_single_patch_hooks(arch, site):
    lm = tiny_model(arch)
    clean_ids, corrupt_ids = tiny_ids(8, seed=1), tiny_ids(8, seed=2)
    local = {"resid": "hook_resid_pre", "attn": "hook_attn_out", "mlp": "hook_mlp_out"}[site]
    clean = tiny_run(lm, clean_ids, [f"blocks.{l}.{local}" for l in range(lm.info.n_layers)])
    for layer in (0, lm.info.n_layers - 1):
        values = clean.act(f"blocks.{layer}.{local}").float()
        positions = [0, 3, 7]
        batched = patch_layer(lm, corrupt_ids, Corruption(text="x"), site, layer, positions, values)
        for row, position in enumerate(positions):
            ref = hook_patched_logits(lm, corrupt_ids, site, layer, position, values[position])
            torch.testing.assert_close(batched[row], ref.float(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_noise_corruption_matches_a_hand_written_noise_hook(arch):
    lm = tiny_model(arch)
    ids = tiny_ids(8, seed=3)
    clean = tiny_run(lm, ids, [f"blocks.{l}.hook_resid_pre" for l in range(lm.info.n_layers)])
    corruption = Corruption(positions=(1, 2), seed=5)
    delta = noise(lm, (1, 2), 5)
    std = float(lm.model.get_input_embeddings().weight.std() * getattr(lm.model.get_input_embeddings(), "embed_scale", 1.0))
    assert float(delta.std()) == pytest.approx(3 * std, rel=0.35)  # 3 sigma of the embedding (a small sample)
    assert set(_noise_edit(lm, corruption)) == {"hook_embed"}
    values = clean.act("blocks.1.hook_resid_pre").float()
    batched = patch_layer(lm, ids, corruption, "resid", 1, [1, 5], values)
    for row, position in enumerate([1, 5]):
        ref = hook_patched_logits(lm, ids, "resid", 1, position, values[position], noise_at=((1, 2), delta))
        torch.testing.assert_close(batched[row], ref.float(), atol=2e-5, rtol=1e-4)
    assert torch.equal(noise(lm, (1, 2), 5), delta)  # seeded


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
@pytest.mark.parametrize("corruption", ["prompt", "noise"])
def test_resumed_batches_equal_the_full_pass(arch, corruption):
    """A batch that starts at its layer from the corrupted block input and at its first patch (earlier
    positions as the corrupted run's keys and values) gives the logits of the full pass, on every decoder
    (the tiny Gemma 3's window is 4 of 10 tokens), for each site."""
    lm = tiny_model(arch)
    clean_ids = tiny_ids(10, seed=1)
    corrupted_ids = tiny_ids(10, seed=2) if corruption == "prompt" else clean_ids
    spec = Corruption(text="x") if corruption == "prompt" else Corruption(positions=(2, 6), seed=3)
    run, _normed = CorruptedRun.of(lm, corrupted_ids, spec)
    assert len(run.keys) == lm.info.n_layers and run.keys[0][0].shape[2] == 10  # no window trimming
    for site, local in (("resid", "hook_resid_pre"), ("attn", "hook_attn_out"), ("mlp", "hook_mlp_out")):
        clean = tiny_run(lm, clean_ids, [f"blocks.{l}.{local}" for l in range(lm.info.n_layers)])
        for layer in (0, 1, lm.info.n_layers - 1):
            values = clean.act(f"blocks.{layer}.{local}").float()
            positions = [4, 5, 9]
            full = patch_layer(lm, corrupted_ids, spec, site, layer, positions, values)
            for chunk in ([4, 5, 9], [0, 9], [5]):
                rows = [positions.index(p) for p in chunk if p in positions]
                reused = patch_layer(lm, corrupted_ids, spec, site, layer, chunk, values, run)
                reference = full[rows] if len(rows) == len(chunk) else \
                    patch_layer(lm, corrupted_ids, spec, site, layer, chunk, values)
                torch.testing.assert_close(reused, reference, atol=2e-5, rtol=1e-4)
    assert not torch.equal(full[0], full[2])  # the cells differ: the patch is not a no-op


def test_batches_cover_every_position_once_in_sorted_runs():
    positions = [9, 1, 5, 3, 7, 2, 8, 0]
    plan = batches(positions, per_batch=64)
    assert len(plan) == 4 and sorted(i for chunk in plan for i in chunk) == list(range(8))
    assert [[positions[i] for i in chunk] for chunk in plan] == [[0, 1], [2, 3], [5, 7], [8, 9]]
    assert len(batches(list(range(100)), per_batch=16)) == 7  # bounded by the batch size too
    assert batches([4], per_batch=8) == [[0]]


def test_metric_is_probability_or_logit_difference():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    probs = metric_values(None, logits, 1, None)
    torch.testing.assert_close(probs, logits.softmax(-1)[:, 1])
    torch.testing.assert_close(metric_values(None, logits, 1, 2), torch.tensor([1.5, -3.0]))
