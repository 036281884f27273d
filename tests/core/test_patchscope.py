"""Patchscopes on the embedded SmolLM2: equal to a hand-written HF hook and greedy loop."""

from __future__ import annotations

import pytest
import torch

from analysis.errors import InputError
from analysis.patchscope import IDENTITY_PROMPT, describe_state
from analysis.settings import EMBEDDED_LM
from analysis.sites import arch_for, get_module

SOURCE = "The Eiffel Tower is in the city of Paris"


def _reference(lm, state, target_layer, steps):
    """Plain HF: a forward hook on block ``target_layer`` replacing the prompt's last position, greedy."""
    ids = lm.tokenizer(IDENTITY_PROMPT, add_special_tokens=True)["input_ids"]
    placeholder = len(ids) - 1
    block = get_module(lm.model, arch_for(lm.model).layers)[target_layer]

    def hook(_module, _args, output):
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[:, placeholder] = state
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = block.register_forward_hook(hook)
    generated, first = [], None
    try:
        with torch.no_grad():
            for _ in range(steps):
                logits = lm.model(input_ids=torch.tensor([ids + generated]), use_cache=False).logits[0, -1]
                first = logits.softmax(-1) if first is None else first
                generated.append(int(logits.argmax()))
    finally:
        handle.remove()
    return generated, first


@pytest.mark.parametrize(("layer", "target_layer"), [(3, None), (12, 6)])
def test_describe_state_equals_a_hand_written_hook(runtime, smollm2, layer, target_layer):
    run = runtime.run(EMBEDDED_LM, SOURCE, [f"blocks.{layer}.hook_resid_post"])
    position = run.n_tokens - 1
    result = describe_state(runtime, EMBEDDED_LM, SOURCE, layer, position, target_layer=target_layer,
                            max_new_tokens=4, top_k=5)
    state = run.act(f"blocks.{layer}.hook_resid_post")[position].float()
    generated, first = _reference(smollm2, state, layer if target_layer is None else target_layer, 4)
    assert result.continuation_ids == generated[: len(result.continuation_ids)]
    values, indices = first.topk(5)
    assert result.top_tokens == smollm2.decode(indices.tolist())
    assert result.top_probs == pytest.approx(values.tolist(), abs=1e-4)
    assert result.source_token == run.tokens[position] and result.text == "".join(result.continuation)


def test_describe_state_bounds_are_named(runtime, smollm2):
    with pytest.raises(InputError, match="Layer"):
        describe_state(runtime, EMBEDDED_LM, SOURCE, 30, 0)
    with pytest.raises(InputError, match="Position"):
        describe_state(runtime, EMBEDDED_LM, SOURCE, 3, 999)
    with pytest.raises(InputError, match="New tokens"):
        describe_state(runtime, EMBEDDED_LM, SOURCE, 3, 0, max_new_tokens=500)
