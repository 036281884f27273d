"""Edits: each kind equals a hand-written HF forward hook doing the same thing, on every decoder."""

from __future__ import annotations

import pytest
import torch

from analysis.capture import capture
from analysis.edits import (
    MAX_EDITS,
    FeatureEdit,
    HeadEdit,
    NeuronEdit,
    SteerEdit,
    capture_edits,
    edits_key,
    edits_text,
    parse_edits,
    resolve_edits,
)
from analysis.errors import InputError
from analysis.settings import EMBEDDED_LM
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


# ---- SAE features, corpus means, patches from another text, edited runs in the run cache ------

class ToySAE:
    """A ReLU SAE at a residual site (the FeatureSource a feature edit needs)."""

    def __init__(self, site: str, d_model: int, d_sae: int = 12, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.site, self.d_sae = site, d_sae
        self.enc = torch.randn(d_model, d_sae, generator=gen)
        self.bias = torch.randn(d_sae, generator=gen)
        self.dec = torch.randn(d_sae, d_model, generator=gen)

    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        return torch.relu(acts.float() @ self.enc + self.bias)

    def W_dec(self) -> torch.Tensor:  # noqa: N802
        return self.dec


def _output_hook(fn):
    def hook(_module, _args, output):
        hidden = fn((output[0] if isinstance(output, tuple) else output).clone())
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
@pytest.mark.parametrize("value", [0.0, 3.0])
def test_feature_ablation_and_clamp_equal_a_plain_hook(arch, value):
    lm = tiny_model(arch)
    ids = tiny_ids(9, seed=6)
    sae = ToySAE("blocks.1.hook_resid_post", lm.info.d_model)
    feature = int(sae.encode(capture(lm, torch.tensor([ids]), [sae.site]).acts[sae.site][0]).sum(0).argmax())

    def clamp(hidden):
        current = sae.encode(hidden)[..., feature]
        return hidden + (value - current)[..., None] * sae.dec[feature]

    _spec, block = _block(lm, 1)
    handle = block.register_forward_hook(_output_hook(clamp))
    try:
        with torch.no_grad():
            ref = lm.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    finally:
        handle.remove()
    edited = capture(lm, torch.tensor([ids]), [sae.site],
                     edits=capture_edits(lm, [FeatureEdit("toy", feature, value, sae)]))
    torch.testing.assert_close(edited.logits[0], ref, atol=1e-5, rtol=1e-4)
    clean = capture(lm, torch.tensor([ids]), [sae.site]).acts[sae.site][0]
    torch.testing.assert_close(edited.acts[sae.site][0], clamp(clean.clone()), atol=1e-5, rtol=1e-4)  # the site shows it
    with pytest.raises(InputError, match="feature 12 is outside 0..11"):
        capture_edits(lm, [FeatureEdit("toy", 12, 0.0, sae)])


def test_feature_patch_and_mean_text_forms():
    edits = parse_edits("feature[embedded]:F7=2.5; neuron:L1.N3=mean; head:L0.H2=mean; patch:L2.resid_pre@1-2",
                        sources=["another text"], n_tokens=8)
    assert edits[0] == FeatureEdit("embedded", 7, 2.5) and edits[1].mean and edits[1].value is None
    assert edits[3].positions == (1, 2) and edits[3].source == "another text"
    assert edits_text(edits) == "feature[embedded]:F7=2.5;neuron:L1.N3=mean;head:L0.H2=mean;patch:L2.resid_pre@1,2"
    with pytest.raises(InputError, match="needs a source text"):
        parse_edits("patch:L2.resid_pre@1")
    with pytest.raises(InputError, match="corpus mean was not resolved"):
        capture_edits(tiny_model("llama"), parse_edits("neuron:L1.N3=mean"))
    with pytest.raises(InputError, match="no SAE attached"):
        capture_edits(tiny_model("llama"), parse_edits("feature[embedded]:F1"))
    assert edits_key([]) == ""
    vector = torch.ones(4)
    one = edits_key([SteerEdit(0, vector)])
    assert one != edits_key([SteerEdit(0, 2 * vector)]) and one.startswith("steer:L0.resid_pre*1#")


def test_mean_ablation_uses_the_corpus_mean_by_hand(runtime, smollm2):
    from analysis.corpus.training import training_corpus
    from analysis.edits import MEAN_SEQ_LEN, corpus_means
    from analysis.io import pack_rows

    means = corpus_means(runtime, EMBEDDED_LM, n_tokens=384)
    rows = pack_rows(smollm2.tokenizer, training_corpus(max_chars=384 * 8, heldout_chars=0).train, 384, MEAN_SEQ_LEN)
    spec, block = _block(smollm2, 4)
    seen: list[torch.Tensor] = []
    handle = get_module(block, spec.mlp_down).register_forward_pre_hook(lambda _m, args: seen.append(args[0][0, 1:]))
    try:
        with torch.no_grad():
            for row in rows:
                smollm2.model(input_ids=torch.tensor([row]), use_cache=False)
    finally:
        handle.remove()
    by_hand = torch.cat(seen).double().mean(0).float()
    torch.testing.assert_close(means["blocks.4.mlp.hook_post"], by_hand, atol=1e-5, rtol=1e-4)
    assert means["blocks.4.attn.hook_z"].shape == (smollm2.info.n_heads, smollm2.info.d_head)


def test_patch_from_another_text_equals_a_plain_hook(runtime, smollm2):
    target, source = "The capital of France is Paris. The capital", "The capital of Italy is Rome. The capital"
    edits = resolve_edits(runtime, EMBEDDED_LM, parse_edits("patch:L6.resid_pre@5", sources=[source]))
    source_ids = runtime.tokens(EMBEDDED_LM, source)
    with torch.no_grad():
        state = smollm2.model(input_ids=torch.tensor([source_ids]), output_hidden_states=True,
                              use_cache=False).hidden_states[6][0, 5]

    def patch(_module, args, kwargs):
        if args:
            hidden = args[0].clone()
            hidden[:, 5] = state
            return (hidden, *args[1:]), kwargs
        name = next(iter(kwargs))
        hidden = kwargs[name].clone()
        hidden[:, 5] = state
        return args, {**kwargs, name: hidden}

    ids = list(runtime.tokens(EMBEDDED_LM, target))
    ref = _hooked_logits(smollm2, ids, _block(smollm2, 6)[1], patch)
    edited = runtime.run(EMBEDDED_LM, target, [], edits=edits)
    torch.testing.assert_close(edited.logits, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="the source text has"):
        resolve_edits(runtime, EMBEDDED_LM, parse_edits("patch:L6.resid_pre@60", sources=[source]))


def test_edited_runs_are_cached_by_edit_list_beside_the_clean_run(runtime, smollm2):
    text = "Edits are cached beside the clean run of this text."
    clean = runtime.run(EMBEDDED_LM, text, ["blocks.3.mlp.hook_post"])
    edits = resolve_edits(runtime, EMBEDDED_LM, parse_edits("neuron:L3.N7=5;head:L2.H1=mean"))  # means: one job
    count = smollm2.forward_count
    edited = runtime.run(EMBEDDED_LM, text, ["blocks.3.mlp.hook_post"], edits=edits)
    assert smollm2.forward_count == count + 1
    assert torch.all(edited.act("blocks.3.mlp.hook_post")[:, 7] == 5.0)
    assert not torch.equal(edited.logits, clean.logits) and edited.key != clean.key
    assert runtime.run(EMBEDDED_LM, text, ["blocks.3.mlp.hook_post"]) is clean  # the clean run is untouched
    again = resolve_edits(runtime, EMBEDDED_LM, parse_edits("neuron:L3.N7=5;head:L2.H1=mean"))
    assert runtime.run(EMBEDDED_LM, text, ["blocks.3.mlp.hook_post"], edits=again) is edited
    assert smollm2.forward_count == count + 1  # same (text, edit list): no second forward
    other = resolve_edits(runtime, EMBEDDED_LM, parse_edits("neuron:L3.N7=6"))
    runtime.run(EMBEDDED_LM, text, [], edits=other)
    assert smollm2.forward_count == count + 2


def test_steering_along_a_feature_is_its_decoder_row(runtime, smollm2):
    """``steer:...*s=feature[embedded]:F12`` adds s x W_dec[12] of that SAE (Neuronpedia's steering), i.e. the
    SteerEdit a caller would build with the vector by hand; bounds named."""
    from analysis.features import load_sae

    sae = load_sae(runtime, "embedded", EMBEDDED_LM)
    load = lambda ref: load_sae(runtime, ref, EMBEDDED_LM)  # noqa: E731
    edits = resolve_edits(runtime, EMBEDDED_LM, parse_edits("steer:L15.resid_post@2-4*8=feature[embedded]:F12"), sae=load)
    assert torch.equal(edits[0].vector, sae.W_dec()[12]) and edits[0].positions == (2, 3, 4)
    assert edits_text(edits) == "steer:L15.resid_post@2,3,4*8=feature[embedded]:F12"
    text = "Steering along a feature's direction changes what comes next."
    ours = runtime.run(EMBEDDED_LM, text, [], edits=edits).logits
    by_hand = runtime.run(EMBEDDED_LM, text, [], edits=[SteerEdit(15, sae.W_dec()[12].clone(), 8.0, (2, 3, 4),
                                                                   "resid_post")]).logits
    torch.testing.assert_close(ours, by_hand)
    with pytest.raises(InputError, match="outside 0.."):
        resolve_edits(runtime, EMBEDDED_LM, parse_edits(f"steer:L15.resid_post*8=feature[embedded]:F{sae.d_sae}"),
                      sae=load)
