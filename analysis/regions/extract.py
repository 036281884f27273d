"""Pooled residual streams of every layer for a labeled dataset: one model load, batched, padding-aware.

LLM-MRI pads the whole dataset to its longest text, reloads the model for every ``map`` batch and
keeps ``hidden_states[:, 0]``. Here texts are sorted by length so each batch pads only to its own
longest text (dynamic padding), batches are bounded by a token budget, the model is loaded once, and
each layer's state is pooled (first / mean / last real token) inside the pass as ``capture`` observes it,
so no [batch, tokens, d] tensor of a layer outlives its block.

The states are named as on the Lens page: ``embed`` = block 0's input (``blocks.0.hook_resid_pre``, HF's
``hidden_states[0]``), ``L1`` ... ``L{n-1}`` = the inputs of blocks 1 .. n-1 (= the outputs of the blocks
before them), and ``L{n}`` = the last block's output (``blocks.{n-1}.hook_resid_post``), before any final
norm. For encoders (BERT/MiniLM, no final norm) these are exactly HF's ``hidden_states``; for decoders the
last one differs from HF's ``hidden_states[-1]``, which is taken after the final norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.io import pad_id, pad_right
from analysis.jobs import Job, quiet_job
from analysis.models import LoadedModel

POOLINGS = ("first", "mean", "last")
POOLING_LABELS = {
    "first": "first token (CLS; LLM-MRI's choice, right for BERT-style encoders)",
    "mean": "mean over real tokens",
    "last": "last real token (right for decoder models)",
}


@dataclass
class Activations:
    """``pooled[state, sample, d]`` float32, states as :func:`state_labels` names them."""

    model_id: str
    pooling: str
    pooled: np.ndarray
    n_tokens: np.ndarray  # real tokens per text (after truncation)
    truncated: int  # texts that reached the token limit
    max_tokens: int = 0  # the limit used: min(settings max_tokens, the model's positions)

    @property
    def n_layers(self) -> int:
        return int(self.pooled.shape[0])


def state_sites(n_layers: int) -> list[str]:
    """The capture sites of the n + 1 pooled states (see the module docstring)."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def state_labels(n_layers: int) -> list[str]:
    """``embed``, ``L1`` ... ``L{n}``: the Lens page's row names for the same residual states."""
    return ["embed"] + [f"L{i}" for i in range(1, n_layers + 1)]


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


def _pooler(into: dict[str, torch.Tensor], site: str, mask: torch.Tensor, pooling: str) -> Any:
    """An observer that pools a site's [B, T, d] state as the pass computes it."""

    def take(x: torch.Tensor) -> None:
        into[site] = pool(x, mask, pooling).float().cpu()

    return take


def extract(lm: LoadedModel, texts: Sequence[str], pooling: str = "first", max_tokens: int = 512,
            max_batch: int = 64, max_batch_tokens: int = 16384, job: Job | None = None,
            fused_attention: bool = True, edits: dict | None = None) -> Activations:
    """Pooled residual states of all layers for ``texts`` (in input order), through ``capture``.

    ``job`` reports progress per text and is checked between batches (the one cancel rule).
    ``fused_attention`` runs the passes with SDPA (same numbers to float tolerance, faster).
    ``edits`` (capture's edits, from an edit list) give the edited model's states.
    """
    if pooling not in POOLINGS:
        raise InputError(f"Unknown pooling '{pooling}': use one of {', '.join(POOLINGS)}.")
    if not texts:
        raise InputError("The dataset is empty.")
    job = job or quiet_job()
    tok = lm.tokenizer
    limit = max_tokens
    model_max = getattr(lm.model.config, "max_position_embeddings", None)
    if isinstance(model_max, int) and model_max > 0:
        limit = min(limit, model_max)
    job.phase("tokenizing", total=len(texts), unit="texts")
    encoded = tok(list(texts), add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    truncated = sum(1 for n in lengths if n >= limit)  # texts that reached the limit (were, or may have been, cut)
    sites = state_sites(lm.info.n_layers)
    out: np.ndarray | None = None
    done = 0
    job.phase(f"running {lm.model_id} on {sum(lengths):,} tokens", total=len(texts), unit="texts")
    for batch in _batches(lengths, max_batch, max_batch_tokens):
        job.check()
        ids, mask = pad_right([encoded[i] for i in batch], pad_id(tok))
        pooled: dict[str, torch.Tensor] = {}
        capture(lm, ids, (), attention_mask=mask, logits=False, stop_early=True,
                observe={site: _pooler(pooled, site, mask.to(lm.device), pooling) for site in sites},
                fused_attention=fused_attention, edits=edits)
        stacked = torch.stack([pooled[site] for site in sites]).numpy()
        if out is None:
            out = np.empty((stacked.shape[0], len(texts), stacked.shape[2]), dtype=np.float32)
        out[:, batch] = stacked
        done += len(batch)
        job.update(done)
    assert out is not None
    return Activations(model_id=lm.model_id, pooling=pooling, pooled=out,
                       n_tokens=np.asarray(lengths, dtype=np.int64), truncated=truncated, max_tokens=limit)
