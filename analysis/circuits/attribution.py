"""Direct logit attribution: how much the embedding, every head and every MLP wrote a prediction's logit.

At position p, the final residual stream is the sum of its terms: the block-0 input (token + position
embedding), every head's ``z_h @ W_O[h]``, the attention output biases and every MLP output. Read through
the final norm with its scale frozen at the clean run (TransformerLens's ``apply_ln``) and the unembedding
column of the target (or the difference of two columns), each term gets a share of the logit and the
shares sum to the logit exactly (plus the norm and unembedding biases, reported as one constant).
On Gemma 2/3 the heads pass through the post-attention norm, frozen the same way. The source strip splits
every head's share by the source position it read from: ``A[h, p, s] * v_s @ W_O[h]`` (value-weighted).
The logit attributed is the one before Gemma 2's final soft-cap (the cap is monotone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.capture import Run
from analysis.circuits.decompose import (
    FrozenNorm,
    final_norm,
    final_norm_module,
    head_out_weights,
    out_bias,
    require_causal,
    sandwich_norm,
    softcap,
    unembed_direction,
)
from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.params import parse_int
from analysis.runtime import Runtime

TARGET_KINDS = {"top": "top prediction", "true": "true next token"}


def circuit_sites(n_layers: int) -> list[str]:
    """What one Circuits run captures: every block's input, attention pieces, outputs and the last stream."""
    sites = []
    for layer in range(n_layers):
        sites += [f"blocks.{layer}.{s}" for s in ("hook_resid_pre", "attn.hook_z", "attn.hook_v", "attn.hook_pattern",
                                                  "hook_attn_out", "hook_mlp_out", "mlp.hook_post")]
    return sites + [f"blocks.{n_layers - 1}.hook_resid_post"]


@dataclass(frozen=True)
class Target:
    """What is attributed: a token's logit, or the difference ``positive - negative``."""

    positive: int
    negative: int | None
    label: str


def single_token(lm: LoadedModel, typed: str, name: str, field: str | None = None) -> int:
    """The one vocabulary id a typed token means (``#123`` is an id); several tokens is an error naming them."""
    text = "" if typed is None else str(typed)
    if not text.strip() and text != " ":
        raise InputError(f"{name} is empty: type one token, e.g. ' Paris'.", field=field)
    if text.startswith("#") and text[1:].isdigit():
        token_id = int(text[1:])
        if not 0 <= token_id < lm.info.vocab_size:
            raise InputError(f"{name} id {token_id} is outside the vocabulary 0..{lm.info.vocab_size - 1}.",
                             field=field)
        return token_id
    if len(text) > 100:
        raise InputError(f"{name} has {len(text)} characters; the limit is 100.", field=field)
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = ", ".join(repr(t) for t in lm.decode(ids[:6]))
        raise InputError(f"{name} {text!r} is {len(ids)} tokens ({pieces}); a target must be one token "
                         "(type it with its leading space, or as #id).", field=field)
    return int(ids[0])


def resolve_target(lm: LoadedModel, run: Run, position: int, target: str = "top", contrast: str | None = None) -> Target:
    """``target`` = "top" | "true" | a typed token; ``contrast`` (optional) = a typed token to subtract."""
    logits = run.logits[position]
    if target in (None, "", "top"):
        positive, label = int(torch.argmax(logits)), "top prediction"
    elif target == "true":
        if position + 1 >= run.n_tokens:
            raise InputError(f"The true next token is unknown at the last position ({run.n_tokens - 1}): "
                             "pick 'top' or type a token.", field="circuits-target")
        positive, label = run.token_ids[position + 1], "true next token"
    else:
        positive, label = single_token(lm, target, "The target token", "circuits-target"), "typed token"
    negative = None
    if contrast not in (None, ""):
        negative = single_token(lm, contrast, "The contrast token", "circuits-contrast")
        if negative == positive:
            raise InputError("The contrast token is the target itself: the difference would be 0.",
                             field="circuits-contrast")
    shown = lm.decode([positive])[0]
    if negative is not None:
        return Target(positive, negative, f"{shown!r} − {lm.decode([negative])[0]!r} (logit difference)")
    return Target(positive, None, f"{shown!r} ({label})")


@dataclass
class Attribution:
    """Shares of one logit (or logit difference) at ``position``; ``total`` equals ``logit``."""

    model_id: str
    position: int
    tokens: list[str]
    target: Target
    logit: float  # the model's own logit (difference) at position, before any soft-cap
    embed: float
    heads: np.ndarray  # [L, H]
    attn_bias: np.ndarray  # [L]
    mlp: np.ndarray  # [L]
    constant: float  # final-norm bias and unembedding bias
    sources: np.ndarray  # [T]: every head's share by the source position it read (sums to heads.sum())
    capped_logit: float | None = None  # after Gemma 2's soft-cap, when the model has one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(self.embed + self.heads.sum() + self.attn_bias.sum() + self.mlp.sum() + self.constant)

    @property
    def attention(self) -> np.ndarray:
        """Per-layer attention share: heads plus the output bias [L]."""
        return self.heads.sum(axis=1) + self.attn_bias

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id, "position": self.position, "tokens": self.tokens,
            "target": {"token_id": self.target.positive, "contrast_id": self.target.negative,
                       "label": self.target.label},
            "logit": self.logit, "total": self.total, "embed": self.embed, "constant": self.constant,
            "heads": self.heads.tolist(), "attn_bias": self.attn_bias.tolist(), "mlp": self.mlp.tolist(),
            "sources": self.sources.tolist(), "capped_logit": self.capped_logit,
        }


def layer_read_vectors(lm: LoadedModel, run: Run, position: int, direction: torch.Tensor) -> tuple[FrozenNorm, torch.Tensor, list[torch.Tensor]]:
    """(final norm, e, per-layer head read vectors): a term c of the stream at ``position`` adds ``c . e`` to the
    target; a head's ``z_h @ W_O[h]`` adds ``(z_h @ W_O[h]) . e_l`` (e_l = e, or through Gemma's frozen
    post-attention norm)."""
    norm = final_norm(lm)
    last = run.act(f"blocks.{lm.info.n_layers - 1}.hook_resid_post")[position]
    e = norm.read_vector(direction.to(last.device), norm.scale(last))
    per_layer = []
    for layer in range(lm.info.n_layers):
        post = sandwich_norm(lm, layer, "attn")
        if post is None:
            per_layer.append(e)
            continue
        frozen = FrozenNorm.of(post)
        z = run.act(f"blocks.{layer}.attn.hook_z")[position].float().reshape(-1)
        w_o = head_out_weights(lm, layer).to(z.device)
        o = z @ w_o.reshape(-1, w_o.shape[-1])
        per_layer.append(frozen.read_vector(e, frozen.scale(o)))
    return norm, e, per_layer


def direct_logit_attribution(runtime: Runtime, model_id: str, text: str, position: Any = None,
                             target: str = "top", contrast: str | None = None) -> Attribution:
    """DLA of one prediction of ``text`` (from the cached run; one forward for a new text)."""
    lm = runtime.model(model_id)
    require_causal(lm)
    run = runtime.run(model_id, text, circuit_sites(lm.info.n_layers))
    return attribute_run(lm, run, position, target, contrast)


def attribute_run(lm: LoadedModel, run: Run, position: Any = None, target: str = "top",
                  contrast: str | None = None) -> Attribution:
    """DLA on a run that holds :func:`circuit_sites`."""
    n_layers, n_heads = lm.info.n_layers, lm.info.n_heads
    pos = run.n_tokens - 1 if position in (None, "") else parse_int(position, "Position", 0, run.n_tokens - 1,
                                                                   field="circuits-position")
    tgt = resolve_target(lm, run, pos, target, contrast)
    direction, unembed_constant = unembed_direction(lm, tgt.positive, tgt.negative)
    with torch.inference_mode():
        norm, e, per_layer = layer_read_vectors(lm, run, pos, direction)
        embed = float(run.act("blocks.0.hook_resid_pre")[pos].float() @ e)
        heads = np.zeros((n_layers, n_heads))
        attn_bias = np.zeros(n_layers)
        mlp = np.zeros(n_layers)
        sources = np.zeros(run.n_tokens)
        group = n_heads // lm.info.n_kv_heads
        for layer in range(n_layers):
            e_l = per_layer[layer]
            w_o = head_out_weights(lm, layer).to(e_l.device)
            head_read = w_o @ e_l  # [H, d_head]: what one unit of z_h adds to the target
            z = run.act(f"blocks.{layer}.attn.hook_z")[pos].float()  # [H, d_head]
            heads[layer] = (z * head_read).sum(-1).cpu().numpy()
            bias = out_bias(lm, layer, "attn")
            if bias is not None:
                attn_bias[layer] = float(bias.to(e_l.device) @ e_l)
            mlp[layer] = float(run.act(f"blocks.{layer}.hook_mlp_out")[pos].float() @ e)
            values = run.act(f"blocks.{layer}.attn.hook_v").float()  # [T, H_kv, d_head]
            values = values.repeat_interleave(group, dim=1) if group > 1 else values
            pattern = run.act(f"blocks.{layer}.attn.hook_pattern")[:, pos, :].float()  # [H, T]
            per_source = torch.einsum("shd,hd->sh", values, head_read)  # [T, H]
            sources += (per_source * pattern.T).sum(-1).cpu().numpy()
        constant = norm.bias_term(direction) + unembed_constant
        last = run.act(f"blocks.{n_layers - 1}.hook_resid_post")[pos : pos + 1]
        normed = final_norm_module(lm)(last)[0].float()  # the model's own norm, not the frozen one
        logit = float(normed @ direction.to(normed.device)) + unembed_constant
    cap = softcap(lm)
    capped = None
    if cap is not None:
        capped = float(cap * np.tanh(float(run.logits[pos, tgt.positive]) / cap))
    return Attribution(lm.model_id, pos, list(run.tokens), tgt, logit, embed, heads, attn_bias, mlp, constant,
                       sources, capped)


@dataclass(frozen=True)
class NeuronShare:
    neuron: int
    activation: float
    share: float  # activation x (W_out[n] . e): its direct share of the target at this position


def neuron_shares(lm: LoadedModel, run: Run, layer: int, position: int, target: Target, k: int = 20) -> list[NeuronShare]:
    """The ``k`` MLP neurons of ``layer`` at ``position`` with the largest |share| of the target's logit read at
    that position (activation x W_out row . target direction; through Gemma's frozen post-MLP norm)."""
    from analysis.circuits.decompose import mlp_out_weights

    direction, _constant = unembed_direction(lm, target.positive, target.negative)
    with torch.inference_mode():
        _norm, e, _per_layer = layer_read_vectors(lm, run, position, direction)
        acts = run.act(f"blocks.{layer}.mlp.hook_post")[position].float()
        w_out = mlp_out_weights(lm, layer).to(acts.device)
        read = w_out @ e
        post = sandwich_norm(lm, layer, "mlp")
        if post is not None:
            frozen = FrozenNorm.of(post)
            raw = acts @ w_out
            read = w_out @ frozen.read_vector(e, frozen.scale(raw))
        shares = acts * read
        top = torch.topk(shares.abs(), min(k, shares.numel())).indices.tolist()
    return [NeuronShare(int(n), float(acts[n]), float(shares[n])) for n in top]
