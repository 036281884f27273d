"""Continuations with and without the shared edit list, side by side (Neuronpedia's steering view).

Both continuations start from the same prompt ids and, when sampling, the same seed, so the only difference
is the edit list (applied through capture's edits on every step's forward). Greedy at temperature 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from analysis.capture import capture
from analysis.edits import capture_edits
from analysis.errors import InputError
from analysis.params import parse_float, parse_int
from analysis.runtime import Runtime

MAX_NEW_TOKENS = 64
MAX_PROMPT_TOKENS = 512


@dataclass
class Continuation:
    ids: list[int]
    tokens: list[str]
    text: str


@dataclass
class GenerationPair:
    """The prompt's clean and edited continuations under one decoding setting."""

    prompt_tokens: int
    clean: Continuation
    edited: Continuation | None
    temperature: float
    seed: int
    edits: str


def _continue(lm: Any, ids: list[int], hooks: dict | None, new_tokens: int, temperature: float, seed: int) -> Continuation:
    generator = torch.Generator().manual_seed(seed)
    generated: list[int] = []
    eos = getattr(lm.tokenizer, "eos_token_id", None)
    for _ in range(new_tokens):
        logits = capture(lm, torch.tensor([ids + generated]), [], edits=hooks, fused_attention=True).logits[0, -1]
        if temperature == 0:
            next_id = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            next_id = int(torch.multinomial(probs, 1, generator=generator))
        generated.append(next_id)
        if next_id == eos:
            break
    tokens = lm.decode(generated)
    return Continuation(generated, tokens, "".join(tokens))


def generate_pair(runtime: Runtime, model_id: str, prompt_ids: Sequence[int], edits: Sequence[Any] = (),
                  new_tokens: Any = 24, temperature: Any = 0.0, seed: Any = 0) -> GenerationPair:
    """Continue ``prompt_ids`` clean and with ``edits`` (resolved records), same decoding and seed."""
    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise InputError(f"Generation needs a causal language model, not the encoder {model_id}.")
    new_tokens = parse_int(new_tokens, "New tokens", 1, MAX_NEW_TOKENS, field="tokens-gen-new")
    temperature = parse_float(temperature, "Temperature", 0.0, 2.0, field="tokens-gen-temp")
    seed = parse_int(seed, "Seed", 0, 2**31 - 1, field="tokens-gen-seed")
    ids = list(prompt_ids)[-MAX_PROMPT_TOKENS:]
    if not ids:
        raise InputError("The prompt is empty.")
    clean = _continue(lm, ids, None, new_tokens, temperature, seed)
    edited = _continue(lm, ids, capture_edits(lm, edits), new_tokens, temperature, seed) if edits else None
    return GenerationPair(len(ids), clean, edited, temperature, seed, ";".join(e.text for e in edits))
