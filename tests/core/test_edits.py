"""Edits: each kind equals a hand-written HF forward hook doing the same thing, on every decoder."""

from __future__ import annotations

import pytest
import torch

from analysis.capture import capture
from analysis.edits import MAX_EDITS, HeadEdit, NeuronEdit, SteerEdit, capture_edits, edits_text, parse_edits
from analysis.errors import InputError
from analysis.sites import arch_for, base_model_root, get_module
from tests.circuits.common import CAUSAL_ARCHS, tiny_ids
from tests.tiny_models import tiny_model


def _hooked_logits(lm, ids, module, pre_hook) -> torch.Tensor:
    handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            return lm.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    finally:
        handle.remove()


def _first_arg(fn):
    def hook(_module, args, kwargs):
        if args:
            return (fn(args[0].clone()), *args[1:]), kwargs
        name = next(iter(kwargs))
        return args, {**kwargs, name: fn(kwargs[name].clone())}

    return hook


def _edited_logits(lm, ids, edits) -> torch.Tensor:
    return capture(lm, torch.tensor([ids]), [], edits=capture_edits(lm, edits)).logits[0]


def _block(lm, layer):
    spec = arch_for(lm.model)
    return spec, get_module(base_model_root(lm.model, spec), spec.layers)[layer]


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_neuron_head_and_steering_edits_equal_plain_hooks(arch):
    lm = tiny_model(arch)
    ids = tiny_ids(9, seed=4)
    clean = capture(lm, torch.tensor([ids]), []).logits[0]
    spec, block = _block(lm, 1)
    d_head = lm.info.d_head

    def zero_neuron(x):
        x[..., 3] = 0.0
        return x

    ref = _hooked_logits(lm, ids, get_module(block, spec.mlp_down), _first_arg(zero_neuron))
    ours = _edited_logits(lm, ids, [NeuronEdit(1, 3)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ours, clean, atol=1e-4)

    def head_value(x):
        x[..., 1 * d_head:2 * d_head] = 0.5
        return x

    ref = _hooked_logits(lm, ids, get_module(block, spec.o), _first_arg(head_value))
    ours = _edited_logits(lm, ids, [HeadEdit(1, 1, 0.5)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ours, clean, atol=1e-4)

    vector = torch.randn(lm.info.d_model, generator=torch.Generator().manual_seed(2))

    def steer(x):
        x[:, [2, 3]] += 3.0 * vector
        return x

    ref = _hooked_logits(lm, ids, block, _first_arg(steer))
    ours = _edited_logits(lm, ids, [SteerEdit(1, vector, 3.0, (2, 3))])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[:2], clean[:2], atol=1e-5, rtol=1e-4)  # causal: earlier positions unchanged


def test_edits_of_one_site_compose_in_order_and_captured_z_shows_the_edit():
    lm = tiny_model("llama")
    ids = tiny_ids(7, seed=5)
    both = capture(lm, torch.tensor([ids]), ["blocks.0.attn.hook_z", "blocks.0.mlp.hook_post"],
                   edits=capture_edits(lm, [HeadEdit(0, 0), HeadEdit(0, 1, 2.0), NeuronEdit(0, 5, 1.5)]))
    z = both.acts["blocks.0.attn.hook_z"][0]
    assert torch.all(z[:, 0] == 0) and torch.all(z[:, 1] == 2.0) and not torch.all(z[:, 2] == 0)
    assert torch.all(both.acts["blocks.0.mlp.hook_post"][0][:, 5] == 1.5)


def test_text_form_round_trips_and_bounds_are_named():
    lm = tiny_model("llama")
    vector = torch.ones(lm.info.d_model)
    edits = parse_edits("neuron:L1.N3; head:L0.H1=0.5; steer:L2.resid_post@1-2*4", [vector], n_tokens=8)
    assert edits[0] == NeuronEdit(1, 3) and edits[1] == HeadEdit(0, 1, 0.5)
    assert edits[2].positions == (1, 2) and edits[2].scale == 4.0 and edits[2].where == "resid_post"
    assert edits_text(edits) == "neuron:L1.N3;head:L0.H1=0.5;steer:L2.resid_post@1,2*4"
    assert parse_edits(edits_text(edits), [vector])[:2] == edits[:2]
    assert parse_edits("") == []
    bad = {"neuron:L9.N1": "layer 9 is outside 0..2", f"neuron:L0.N{lm.info.d_mlp}": f"outside 0..{lm.info.d_mlp - 1}",
           f"head:L0.H{lm.info.n_heads}": f"outside 0..{lm.info.n_heads - 1}"}
    for text, words in bad.items():
        with pytest.raises(InputError, match=words):
            capture_edits(lm, parse_edits(text))
    with pytest.raises(InputError, match="width"):
        capture_edits(lm, [SteerEdit(0, torch.ones(3))])
    with pytest.raises(InputError, match="not an edit"):
        parse_edits("ablate everything")
    with pytest.raises(InputError, match="needs steering vector 1; 0 given"):
        parse_edits("steer:L0.resid_pre")
    with pytest.raises(InputError, match=f"the limit is {MAX_EDITS}"):
        parse_edits(";".join(["neuron:L0.N1"] * (MAX_EDITS + 1)))
    with pytest.raises(InputError, match="causal language models only"):
        capture_edits(tiny_model("bert"), [NeuronEdit(0, 1)])
