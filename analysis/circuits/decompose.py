"""The linear pieces of a decoder the Circuits page decomposes: per-head output weights, output biases, the
MLP's down projection, and norms applied with their scale frozen at the clean run.

TransformerLens's ``apply_ln`` convention: a norm is linear once its scale (the RMS, or the standard
deviation for LayerNorm) is frozen at the value it had on the clean run, so every term of the residual
stream can be read through it separately and the terms add up to the normed stream exactly. Gemma 2/3's
post-attention and post-feed-forward norms (sandwich norms) are frozen the same way, so heads and neurons
stay linear pieces of what attention and the MLP add to the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.readout import norm_gain, unembedding_weight
from analysis.sites import arch_for, base_model_root, get_module

SANDWICH_FAMILIES = ("gemma2", "gemma3")  # attention / MLP outputs pass through their own RMSNorm


def require_causal(lm: LoadedModel) -> None:
    """Circuits reads predictions: an encoder (BERT) has none."""
    if not lm.info.is_causal or arch_for(lm.model).final_norm is None:
        raise InputError(f"Circuits needs a causal language model; {lm.model_id} is an encoder.")


def _weight_in_out(module: torch.nn.Module) -> torch.Tensor:
    """A projection's weight as [in, out] (HF Linear stores [out, in]; GPT-2's Conv1D stores [in, out])."""
    weight = module.weight.detach()
    return weight if type(module).__name__ == "Conv1D" else weight.T


def _layer(lm: LoadedModel, layer: int) -> torch.nn.Module:
    spec = arch_for(lm.model)
    return get_module(base_model_root(lm.model, spec), spec.layers)[layer]


def head_out_weights(lm: LoadedModel, layer: int) -> torch.Tensor:
    """W_O of every head of ``layer`` as [H, d_head, d_model] (float32): head h writes ``z_h @ W_O[h]``."""
    module = get_module(_layer(lm, layer), arch_for(lm.model).o)
    weight = _weight_in_out(module).float()
    return weight.reshape(lm.info.n_heads, lm.info.d_head, weight.shape[-1])


def out_bias(lm: LoadedModel, layer: int, kind: str) -> torch.Tensor | None:
    """The bias the attention output projection (``kind="attn"``) adds, float32, or None."""
    spec = arch_for(lm.model)
    module = get_module(_layer(lm, layer), spec.o if kind == "attn" else spec.mlp_down)
    bias = getattr(module, "bias", None)
    return None if bias is None else bias.detach().float()


def mlp_out_weights(lm: LoadedModel, layer: int) -> torch.Tensor:
    """The MLP's down projection as [d_mlp, d_model] (float32): neuron n writes ``a_n * W_out[n]``."""
    return _weight_in_out(get_module(_layer(lm, layer), arch_for(lm.model).mlp_down)).float()


def sandwich_norm(lm: LoadedModel, layer: int, kind: str) -> torch.nn.Module | None:
    """Gemma 2/3's norm on the attention (``attn``) or MLP (``mlp``) output, else None."""
    spec = arch_for(lm.model)
    if spec.family not in SANDWICH_FAMILIES:
        return None
    return get_module(_layer(lm, layer), spec.attn_out_module if kind == "attn" else spec.mlp_out_module)


@dataclass(frozen=True)
class FrozenNorm:
    """A norm module made linear: ``apply(c) = gain * centre(c) / scale`` (+ ``bias`` once, for the whole)."""

    gain: torch.Tensor | None  # [d] or None
    bias: torch.Tensor | None  # [d] or None (LayerNorm only)
    eps: float
    centred: bool  # LayerNorm subtracts the mean; RMSNorm does not

    @classmethod
    def of(cls, module: torch.nn.Module) -> FrozenNorm:
        centred = isinstance(module, torch.nn.LayerNorm)
        eps = getattr(module, "variance_epsilon", None)
        if eps is None:
            eps = getattr(module, "eps", 1e-6)
        bias = getattr(module, "bias", None) if centred else None
        return cls(norm_gain(module), None if bias is None else bias.detach().float(), float(eps), centred)

    def scale(self, stream: torch.Tensor) -> torch.Tensor:
        """The frozen scale [..., 1] of the whole stream [..., d] (float32)."""
        x = stream.float()
        if self.centred:
            return torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + self.eps)
        return torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def read_vector(self, direction: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The vector e with ``apply(c) . direction == c . e`` for every term c ([..., d] for scale [..., 1])."""
        vec = direction.float()
        if self.gain is not None:
            vec = vec * self.gain.to(vec.device)
        if self.centred:
            vec = vec - vec.mean(-1, keepdim=True)
        return vec / scale

    def bias_term(self, direction: torch.Tensor) -> float:
        return 0.0 if self.bias is None else float(self.bias.to(direction.device) @ direction.float())


def final_norm_module(lm: LoadedModel) -> torch.nn.Module:
    require_causal(lm)
    return get_module(lm.model, arch_for(lm.model).final_norm)


def final_norm(lm: LoadedModel) -> FrozenNorm:
    return FrozenNorm.of(final_norm_module(lm))


def unembed_direction(lm: LoadedModel, positive: int, negative: int | None = None) -> tuple[torch.Tensor, float]:
    """The residual-space direction of a logit (``W_U[pos]``) or logit difference (``W_U[pos] - W_U[neg]``),
    float32, and the unembedding bias's share of it."""
    weight = unembedding_weight(lm)
    direction = weight[positive].detach().float()
    head = lm.model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    constant = 0.0 if bias is None else float(bias[positive])
    if negative is not None:
        direction = direction - weight[negative].detach().float()
        constant -= 0.0 if bias is None else float(bias[negative])
    return direction, constant


def softcap(lm: LoadedModel) -> float | None:
    """Gemma 2's final logit soft-cap (``cap * tanh(logit / cap)``), or None: attribution reads the logit before it."""
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    return float(cap) if cap else None
