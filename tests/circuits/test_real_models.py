"""Circuits on the embedded models: completeness, patching cells vs a plain HF hook, graph vs dense."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.circuits import (
    circuit_sites,
    contribution_graph,
    contributions,
    direct_logit_attribution,
    patching_grid,
)
from analysis.errors import InputError
from tests.circuits.test_graph import dense_layer
from tests.circuits.test_patching import hook_patched_logits

EIFFEL = "The Eiffel Tower is located in the city of"
COLOSSEUM = "The Colosseum is located in the city of"


@pytest.mark.parametrize("which", ["smollm2", "gemma"])
def test_dla_completeness_on_real_weights(runtime, which, request):
    lm = request.getfixturevalue(which)
    for target, contrast in [("top", None), (" Paris", " Rome"), ("true", None)]:
        att = direct_logit_attribution(runtime, lm.model_id, EIFFEL, 5 if target == "true" else None, target, contrast)
        run = runtime.run(lm.model_id, EIFFEL, circuit_sites(lm.info.n_layers))
        expected = float(run.logits[att.position, att.target.positive])
        if att.target.negative is not None:
            expected -= float(run.logits[att.position, att.target.negative])
        assert att.total == pytest.approx(att.logit, rel=1e-4)
        assert att.logit == pytest.approx(expected, rel=1e-4, abs=1e-4)
        assert att.sources.sum() == pytest.approx(att.heads.sum(), rel=1e-3, abs=1e-3)


def test_patching_grid_cells_equal_plain_hooks(runtime, smollm2):
    clean = runtime.run(smollm2.model_id, EIFFEL, [f"blocks.{l}.hook_resid_pre" for l in range(30)])
    corrupted = runtime.run(smollm2.model_id, COLOSSEUM, [])
    assert clean.n_tokens == corrupted.n_tokens
    grid = patching_grid(runtime, smollm2.model_id, EIFFEL, COLOSSEUM, site="resid", target=" Paris",
                         contrast=" Rome", positions="1-4,9")
    assert grid.values.shape == (30, 5) and grid.forwards == 1 + 30 * 4  # the corrupted pass, then 4 batches per layer
    paris, rome = (smollm2.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Rome"))
    for layer, column in [(0, 0), (7, 2), (29, 4), (15, 3)]:
        position = grid.positions[column]
        ref = hook_patched_logits(smollm2, corrupted.token_ids, "resid", layer, position,
                                  clean.act(f"blocks.{layer}.hook_resid_pre")[position])
        assert grid.values[layer, column] == pytest.approx(float(ref[paris] - ref[rome]), abs=2e-3, rel=1e-3)
    # position 9 holds the same token in both prompts: restoring its embedding changes nothing
    assert clean.token_ids[9] == corrupted.token_ids[9]
    assert grid.values[0, 4] == pytest.approx(grid.corrupted_value, abs=2e-3)
    assert grid.clean_value > grid.corrupted_value  # Paris beats Rome only in the clean prompt
    noisy = patching_grid(runtime, smollm2.model_id, EIFFEL, noise_positions="1-4", site="mlp", target=" Paris",
                          positions="3-5")
    assert noisy.corrupted_value < noisy.clean_value and noisy.values.shape == (30, 3)
    with pytest.raises(InputError, match="same token count"):
        patching_grid(runtime, smollm2.model_id, EIFFEL, "A much longer corrupted prompt than the clean one is.")
    with pytest.raises(InputError, match="the limit is 16,384"):
        patching_grid(runtime, smollm2.model_id, "word " * 600, noise_positions="1")


def test_contribution_graph_on_smollm2_equals_dense_formula(runtime, smollm2):
    text = "When Mary and John went to the store, John gave a drink to"
    contrib = contributions(runtime, smollm2.model_id, text)
    run = runtime.run(smollm2.model_id, text, circuit_sites(30))
    for layer in (0, 13, 29):
        heads, resid = dense_layer(smollm2, run, layer)
        # atol: a masked (zero) part's share is ||y|| - ||y - 1e-6|| in float32, rounding noise of ~1e-5 in
        # both computations (LLM-TT's too); shares that can pass a threshold (>= 0.01) agree to 1e-3
        np.testing.assert_allclose(contrib.layers[layer].attn, heads.sum(-1).numpy(), rtol=1e-3, atol=5e-5)
        np.testing.assert_allclose(contrib.layers[layer].resid_attn, resid.numpy(), rtol=1e-3, atol=5e-5)
    forwards = smollm2.forward_count
    graph = contribution_graph(runtime, smollm2.model_id, text, None, 0.04)
    wider = contribution_graph(runtime, smollm2.model_id, text, None, 0.02)
    assert smollm2.forward_count == forwards  # moving the threshold never re-runs the model
    assert f"I29_{run.n_tokens - 1}" in graph.nodes and len(wider.edges) >= len(graph.edges) > 0
    assert any(e.kind == "attn" and e.source != e.target.replace("A", "I") for e in graph.edges)
