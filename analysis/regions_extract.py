"""Pooled hidden states of every layer for a labeled dataset: one model load, batched, padding-aware.

LLM-MRI pads the whole dataset to its longest text, reloads the model for every ``map`` batch and
keeps ``hidden_states[:, 0]``. Here texts are sorted by length so each batch pads only to its own
longest text (dynamic padding), batches are bounded by a token budget, the model is loaded once,
and the pooled vector is taken per layer right after the forward pass (first / mean / last real
token). Hand-written because no library pools HF ``hidden_states`` with a padding mask per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from analysis.capture import pad_right
from analysis.errors import InputError
from analysis.models import LoadedModel

POOLINGS = ("first", "mean", "last")
POOLING_LABELS = {
    "first": "first token (CLS; LLM-MRI's choice, right for BERT-style encoders)",
    "mean": "mean over real tokens",
    "last": "last real token (right for decoder models)",
}


class Cancelled(Exception):
    """Raised inside extraction when the caller's ``should_stop`` says so."""


@dataclass
class Activations:
    """``pooled[layer, sample, d]`` (layer 0 = embeddings, as HF ``hidden_states``), float32."""

    model_id: str
    pooling: str
    pooled: np.ndarray
    n_tokens: np.ndarray  # real tokens per text (after truncation)
    truncated: int  # texts that reached the token limit
    max_tokens: int = 0  # the limit used: min(settings max_tokens, the model's positions)

    @property
    def n_layers(self) -> int:
        return int(self.pooled.shape[0])


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer without its LM head (no vocab-sized logits per token)."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) else model


@contextmanager
def _fused_attention(model: torch.nn.Module) -> Iterator[None]:
    """Use SDPA while extracting (same math, fused; no attention weights are needed here), then restore
    the configured implementation (eager, which the attention views need). Callers hold the model lock."""
    current = getattr(model.config, "_attn_implementation", None)
    switch = current == "eager" and getattr(model, "_supports_sdpa", False) and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(current)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B,T,d] hidden states + [B,T] right-padded mask -> [B,d] pooled over real tokens."""
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if pooling == "last":
        last = mask.sum(1).long() - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.clamp(min=0)]
    raise InputError(f"Unknown pooling '{pooling}': use one of {', '.join(POOLINGS)}.")


def _batches(lengths: Sequence[int], max_batch: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices sorted by length (longest first), cut into batches within a padded-token budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # the batch pads to its first (longest) text
        if current and (len(current) >= max_batch or width * (len(current) + 1) > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def extract(lm: LoadedModel, texts: Sequence[str], pooling: str = "first", max_tokens: int = 512,
            max_batch: int = 64, max_batch_tokens: int = 16384,
            progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Activations:
    """Pooled hidden states of all layers for ``texts`` (in input order).

    ``progress(done, total)`` is called after each batch; ``should_stop()`` True aborts with
    :class:`Cancelled`.
    """
    if pooling not in POOLINGS:
        raise InputError(f"Unknown pooling '{pooling}': use one of {', '.join(POOLINGS)}.")
    if not texts:
        raise InputError("The dataset is empty.")
    tok = lm.tokenizer
    limit = max_tokens
    model_max = getattr(lm.model.config, "max_position_embeddings", None)
    if isinstance(model_max, int) and model_max > 0:
        limit = min(limit, model_max)
    encoded = tok(list(texts), add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    truncated = sum(1 for n in lengths if n >= limit)  # texts that reached the limit (were, or may have been, cut)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    backbone = _backbone(lm.model)
    out: np.ndarray | None = None
    done = 0
    with lm.lock, torch.inference_mode(), _fused_attention(lm.model):
        for batch in _batches(lengths, max_batch, max_batch_tokens):
            if should_stop is not None and should_stop():
                raise Cancelled("extraction cancelled")
            ids, mask = pad_right([encoded[i] for i in batch], pad_id)
            ids, mask = ids.to(lm.device), mask.to(lm.device)
            hidden = backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            lm.forward_count += 1
            pooled = torch.stack([pool(h, mask, pooling) for h in hidden]).float().cpu().numpy()
            if out is None:
                out = np.empty((pooled.shape[0], len(texts), pooled.shape[2]), dtype=np.float32)
            out[:, batch] = pooled
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
    assert out is not None
    return Activations(model_id=lm.model_id, pooling=pooling, pooled=out,
                       n_tokens=np.asarray(lengths, dtype=np.int64), truncated=truncated, max_tokens=limit)
