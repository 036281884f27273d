"""Describe a hidden state (Patchscopes, Ghandeharioun et al. 2024): the residual stream of a source text at
(layer, position) — the block's output, ``blocks.{l}.hook_resid_post`` — replaces the target prompt's
stream at its placeholder (the last token) after ``target_layer`` (default the same layer), and the model
continues the target prompt greedily. The default target is the paper's identity prompt
``cat->cat; 135->135; hello->hello; ?``: the model repeats what the injected state encodes.

Each generated token is one forward of prompt + continuation with the injection at the placeholder (no
key/value cache, so the injected position is recomputed identically every step); the first step's top-k
next tokens are returned with their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.params import parse_int
from analysis.runtime import Runtime

IDENTITY_PROMPT = "cat->cat; 135->135; hello->hello; ?"
MAX_NEW_TOKENS = 32


@dataclass
class PatchscopeResult:
    """What the model says about the state at (layer, position) of the source text."""

    model_id: str
    layer: int
    position: int
    source_token: str
    target_layer: int
    prompt: str
    continuation_ids: list[int]
    continuation: list[str]  # one decoded string per generated token
    top_tokens: list[str]  # the first step's top-k
    top_probs: list[float]

    @property
    def text(self) -> str:
        return "".join(self.continuation)


def inject(state: torch.Tensor, position: int):
    """An edit replacing the stream at ``position`` with ``state`` (every batch row)."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, position] = state.to(x.device, x.dtype)
        return x

    return edit


def describe_state(runtime: Runtime, model_id: str, text: str, layer: int, position: int, *,
                   target_layer: int | None = None, prompt: str = IDENTITY_PROMPT, max_new_tokens: int = 8,
                   top_k: int = 5) -> PatchscopeResult:
    """Inject the source state into ``prompt`` at its last token after ``target_layer``; continue greedily."""
    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise InputError(f"Describing a hidden state needs a causal language model, not the encoder {model_id}.")
    n_layers = lm.info.n_layers
    layer = parse_int(layer, "Layer", 0, n_layers - 1, field="patchscope-layer")
    target_layer = layer if target_layer is None else parse_int(target_layer, "Target layer", 0, n_layers - 1,
                                                                field="patchscope-target-layer")
    max_new_tokens = parse_int(max_new_tokens, "New tokens", 1, MAX_NEW_TOKENS, field="patchscope-new-tokens")
    top_k = parse_int(top_k, "Top-k", 1, 20, field="patchscope-topk")
    site = f"blocks.{layer}.hook_resid_post"
    run = runtime.run(model_id, text, [site])
    position = parse_int(position, "Position", 0, run.n_tokens - 1, field="patchscope-position")
    state = run.act(site)[position].float()
    prompt_text = runtime.check_text(prompt, field="patchscope-prompt")
    ids = lm.tokenizer(prompt_text, add_special_tokens=True)["input_ids"]
    placeholder = len(ids) - 1
    edits = {f"blocks.{target_layer}.hook_resid_post": inject(state, placeholder)}
    generated: list[int] = []
    top_tokens: list[str] = []
    top_probs: list[float] = []
    eos = lm.tokenizer.eos_token_id
    for step in range(max_new_tokens):
        logits = capture(lm, torch.tensor([ids + generated]), [], edits=edits, fused_attention=True).logits[0, -1]
        probs = logits.float().softmax(-1)
        if step == 0:
            values, indices = probs.topk(top_k)
            top_tokens, top_probs = lm.decode(indices.tolist()), [float(v) for v in values]
        next_id = int(torch.argmax(probs))
        generated.append(next_id)
        if next_id == eos:
            break
    return PatchscopeResult(lm.model_id, layer, position, run.tokens[position], target_layer, prompt_text, generated,
                            lm.decode(generated), top_tokens, top_probs)
