"""Clean | edited continuations: greedy equals HF's own generate, the edited one a hand-written hook's loop."""

from __future__ import annotations

import pytest
import torch

from analysis.edits import NeuronEdit
from analysis.errors import InputError
from analysis.generate import MAX_NEW_TOKENS, generate_pair
from analysis.settings import EMBEDDED_LM
from analysis.sites import arch_for, get_module

PROMPT = "The Eiffel Tower is in the city of"


def test_greedy_pair_equals_hf_generate_and_a_hooked_loop(runtime, smollm2):
    ids = list(runtime.tokens(EMBEDDED_LM, PROMPT))
    pair = generate_pair(runtime, EMBEDDED_LM, ids, [NeuronEdit(5, 10, 20.0)], new_tokens=8)
    with torch.no_grad():
        ref = smollm2.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
    assert pair.clean.ids == ref[: len(pair.clean.ids)]
    spec = arch_for(smollm2.model)
    down = get_module(get_module(smollm2.model, spec.layers)[5], spec.mlp_down)

    def hook(_module, args):
        x = args[0].clone()
        x[..., 10] = 20.0
        return (x,)

    handle = down.register_forward_pre_hook(hook)
    generated: list[int] = []
    try:
        with torch.no_grad():
            for _ in range(8):
                logits = smollm2.model(input_ids=torch.tensor([ids + generated]), use_cache=False).logits[0, -1]
                generated.append(int(logits.argmax()))
    finally:
        handle.remove()
    assert pair.edited is not None and pair.edited.ids == generated[: len(pair.edited.ids)]
    assert pair.edited.ids != pair.clean.ids and pair.edits == "neuron:L5.N10=20"
    assert pair.clean.text == "".join(smollm2.decode(pair.clean.ids))


def test_sampling_is_seeded_and_bounds_are_named(runtime, smollm2):
    ids = list(runtime.tokens(EMBEDDED_LM, PROMPT))
    one = generate_pair(runtime, EMBEDDED_LM, ids, [], new_tokens=6, temperature=1.0, seed=3)
    two = generate_pair(runtime, EMBEDDED_LM, ids, [], new_tokens=6, temperature=1.0, seed=3)
    assert one.clean.ids == two.clean.ids and one.edited is None
    others = {tuple(generate_pair(runtime, EMBEDDED_LM, ids, [], new_tokens=6, temperature=1.0, seed=s).clean.ids)
              for s in (4, 5, 6)}
    assert len(others | {tuple(one.clean.ids)}) > 1  # the seed matters
    with pytest.raises(InputError, match=f"from 1 to {MAX_NEW_TOKENS}"):
        generate_pair(runtime, EMBEDDED_LM, ids, [], new_tokens=500)
    with pytest.raises(InputError, match="Temperature"):
        generate_pair(runtime, EMBEDDED_LM, ids, [], temperature=-1)
