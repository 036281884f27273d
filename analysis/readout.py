"""The one logit readout: a residual-stream direction read through the final norm's gain and the unembedding.

``effects = W_U @ (gain * direction)``: the direct effect of writing ``direction`` into the last residual
stream on every token's logit, the final norm's scale ignored (TransformerLens's folded ``ln_final`` and
Neuroscope's logit view). The gain is the final norm's weight, or ``1 + weight`` for Gemma's RMSNorm
(Gemma, Gemma 2, Gemma 3 all scale by ``1 + w``); a norm bias and the unembedding bias add the same
constant to every direction's effect on a token and are left out. Gemma 2/3's final logit soft-capping
is monotone, so the top tokens are the same with or without it; effects are reported uncapped.
The gain is folded into the direction, so no copy of the (up to 262k x d) unembedding is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.sites import arch_for, get_module


@dataclass(frozen=True)
class TokenScore:
    token: str
    token_id: int
    logit: float  # the direct effect on this token's logit (per unit of the direction)


@dataclass(frozen=True)
class LogitReadout:
    """The top ``k`` tokens a direction promotes (``positive``) and suppresses (``negative``, most negative first)."""

    positive: list[TokenScore]
    negative: list[TokenScore]


def norm_gain(norm: torch.nn.Module | None) -> torch.Tensor | None:
    """A norm's elementwise scale as it multiplies its input (``1 + w`` for Gemma's RMSNorm), or None."""
    weight = getattr(norm, "weight", None)
    if weight is None:
        return None
    gain = weight.detach().float()
    return gain + 1.0 if "Gemma" in type(norm).__name__ else gain


def final_gain(lm: LoadedModel) -> torch.Tensor | None:
    """The final norm's elementwise scale as it multiplies the stream, or None."""
    spec = arch_for(lm.model)
    return norm_gain(get_module(lm.model, spec.final_norm)) if spec.final_norm else None


def input_embedding(lm: LoadedModel) -> torch.Tensor:
    """W_E [V, d] float32 on CPU (a copy) as the residual stream receives it: the embedding weight times the
    embedding module's own scale (Gemma's sqrt(d_model), 1 elsewhere), as TransformerLens's ``W_E`` and
    ``hook_embed`` are; ghost tokens and embedding statistics live in this space."""
    module = lm.model.get_input_embeddings()
    weight = module.weight.detach().to("cpu", torch.float32, copy=True)
    scale = getattr(module, "embed_scale", None)
    if scale is not None:
        weight *= float(scale)
    return weight


def unembedding_weight(lm: LoadedModel) -> torch.Tensor:
    """W_U [V, d] of a causal LM (its output embedding), as stored (no copy)."""
    head = lm.model.get_output_embeddings() if lm.info.is_causal else None
    if head is None:
        raise InputError(f"Model '{lm.model_id}' has no unembedding (an encoder): logit effects need a causal LM.")
    return head.weight


def logit_effects(lm: LoadedModel, directions: torch.Tensor) -> torch.Tensor:
    """Effects [..., V] (float32, on the model's device) of directions [..., d] on every logit."""
    weight = unembedding_weight(lm)
    if directions.shape[-1] != weight.shape[1]:
        raise InputError(f"The direction has {directions.shape[-1]} dimensions; {lm.model_id}'s unembedding reads "
                         f"{weight.shape[1]}.")
    vec = directions.detach().to(weight.device, torch.float32)
    gain = final_gain(lm)
    if gain is not None:
        vec = vec * gain.to(vec.device)
    with torch.inference_mode():
        return (vec.to(weight.dtype) @ weight.T).float()


def logit_readout(lm: LoadedModel, direction: torch.Tensor, k: int = 10) -> LogitReadout:
    """Top +/- ``k`` tokens of one direction [d] (decoded by the model's one token decoder)."""
    effects = logit_effects(lm, direction.reshape(-1))
    top = torch.topk(effects, k)
    bottom = torch.topk(-effects, k)
    pos_ids, neg_ids = top.indices.tolist(), bottom.indices.tolist()
    return LogitReadout(
        positive=[TokenScore(t, i, float(v)) for t, i, v in zip(lm.decode(pos_ids), pos_ids, top.values.tolist(), strict=True)],
        negative=[TokenScore(t, i, -float(v)) for t, i, v in zip(lm.decode(neg_ids), neg_ids, bottom.values.tolist(),
                                                                  strict=True)],
    )


def top_token_ids(lm: LoadedModel, directions: torch.Tensor, k: int = 10, chunk: int = 256) -> np.ndarray:
    """Top-``k`` promoted token ids of every direction of [n, d], as [n, k] (chunked over directions)."""
    out = np.zeros((directions.shape[0], k), dtype=np.int64)
    for start in range(0, directions.shape[0], chunk):
        block = logit_effects(lm, directions[start : start + chunk])
        out[start : start + chunk] = torch.topk(block, k, dim=1).indices.cpu().numpy()
    return out
