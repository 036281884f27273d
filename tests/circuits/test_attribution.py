"""Direct logit attribution: completeness on every decoder architecture, the source strip, targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.circuits import attribute_run
from analysis.errors import InputError
from tests.circuits.common import CAUSAL_ARCHS, tiny_ids, tiny_run
from tests.tiny_models import tiny_model


@pytest.fixture(scope="module", params=CAUSAL_ARCHS)
def tiny(request):
    return tiny_model(request.param)


@pytest.mark.parametrize("position", [0, 4, 8])
def test_components_sum_to_the_logit(tiny, position):
    run = tiny_run(tiny, tiny_ids())
    for target, contrast in [("top", None), ("#7", None), ("top", "#11")]:
        att = attribute_run(tiny, run, position, target, contrast)
        expected = float(run.logits[position, att.target.positive])
        if att.target.negative is not None:
            expected -= float(run.logits[position, att.target.negative])
        assert att.total == pytest.approx(att.logit, rel=1e-4, abs=1e-5)
        assert att.logit == pytest.approx(expected, rel=1e-4, abs=1e-5)  # no soft-cap on the tiny models
        assert att.sources.sum() == pytest.approx(att.heads.sum(), rel=1e-4, abs=1e-5)
        assert np.all(att.sources[position + 1 :] == 0)  # causal: nothing read from later tokens


def test_head_share_is_its_own_write_read_through_the_final_norm(tiny):
    """One head's share = (z_h W_O[h] through the frozen norm) . W_U[t], computed here by hand from HF modules."""
    from analysis.circuits.decompose import FrozenNorm, final_norm, head_out_weights, sandwich_norm

    run = tiny_run(tiny, tiny_ids())
    att = attribute_run(tiny, run, 5, "#9")
    layer, head = 1, 2
    z = run.act(f"blocks.{layer}.attn.hook_z")[5, head]
    write = z @ head_out_weights(tiny, layer)[head]
    post = sandwich_norm(tiny, layer, "attn")
    if post is not None:
        o = run.act(f"blocks.{layer}.attn.hook_z")[5].reshape(-1) @ head_out_weights(tiny, layer).reshape(-1, write.shape[0])
        gain = FrozenNorm.of(post).gain
        write = write * gain / torch.sqrt(o.pow(2).mean() + FrozenNorm.of(post).eps)
    norm = final_norm(tiny)
    last = run.act(f"blocks.{tiny.info.n_layers - 1}.hook_resid_post")[5]
    centred = write - write.mean() if norm.centred else write
    normed = centred * (norm.gain if norm.gain is not None else 1) / norm.scale(last)
    by_hand = float(normed @ tiny.model.get_output_embeddings().weight[9])
    assert att.heads[layer, head] == pytest.approx(by_hand, rel=1e-4, abs=1e-6)


def test_bad_targets_name_the_problem():
    lm = tiny_model("llama")
    run = tiny_run(lm, tiny_ids())
    with pytest.raises(InputError, match="last position"):
        attribute_run(lm, run, 8, "true")
    with pytest.raises(InputError, match="0 to 8"):
        attribute_run(lm, run, 9, "top")
    with pytest.raises(InputError, match="outside the vocabulary"):
        attribute_run(lm, run, 3, "#96")
    with pytest.raises(InputError, match="target itself"):
        attribute_run(lm, run, 3, "#5", "#5")


def test_neuron_shares_sum_to_the_mlp_share(tiny):
    """Every neuron's share (activation x W_out row . target direction) sums to the MLP's DLA share
    (less the down projection's bias; Gemma's post-MLP norm frozen at the clean scale)."""
    from analysis.circuits import neuron_shares
    from analysis.circuits.attribution import layer_read_vectors, unembed_direction
    from analysis.circuits.decompose import out_bias

    run = tiny_run(tiny, tiny_ids())
    att = attribute_run(tiny, run, 6, "#13")
    shares = neuron_shares(tiny, run, 1, 6, att.target, k=10_000)
    total = sum(s.share for s in shares)
    bias = out_bias(tiny, 1, "mlp")
    if bias is not None:
        direction, _ = unembed_direction(tiny, 13)
        _n, e, _l = layer_read_vectors(tiny, run, 6, direction)
        total += float(bias @ e)
    assert total == pytest.approx(att.mlp[1], rel=1e-4, abs=1e-5)
    assert abs(shares[0].share) >= abs(shares[-1].share)
