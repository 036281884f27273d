"""Feature vectors in embedding space, token lists by the cosine-distance ratio, and logit effects.

After Watkins' SAE "multitool" (definition trees and token lists for Gemma-2B features): a feature
gives two vectors in the model's representation space, its encoder column ``W_enc[:, f]`` and its
decoder row ``W_dec[f]``. From either we build a point in *token-embedding* space:

    g = centroid_offset * c + scale * rho * (v / |v|) + pca_weight * rho * p1

with ``c`` the centroid (mean) of the embedding matrix, ``rho`` the mean distance of token
embeddings from ``c`` (so ``scale`` is in units of a typical token's spread and transfers across
models; for Gemma-2B rho is close to 1, so the notebook's 3.8 means the same there), and ``p1`` the
first principal component of the embedding matrix. Token lists rank every token ``t`` by

    ratio(t) = (1 - cos(g, e_t)) ** m / (1 - cos(c, e_t))

(smallest first): tokens close to the feature vector and far from the generic centroid direction.
Written by hand because no library provides this metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.errors import InputError
from analysis.features_sae import LoadedSAE
from analysis.models import LoadedModel
from analysis.sites import arch_for, get_module

VECTOR_KINDS = ("decoder", "encoder")


@dataclass(frozen=True)
class VectorOptions:
    """How a feature becomes a vector in embedding space (defaults of the original tool)."""

    kind: str = "decoder"  # decoder | encoder
    centroid_offset: float = 1.0  # 0 = around the origin, 1 = around the embedding centroid
    scale: float = 3.8
    pca_weight: float = 0.0
    exponent: float = 1.4  # m, numerator exponent of the token-list ratio

    def check(self) -> VectorOptions:
        if self.kind not in VECTOR_KINDS:
            raise InputError(f"Vector kind must be one of {VECTOR_KINDS}, got '{self.kind}'.")
        for name, low, high in (("scale", -100.0, 100.0), ("centroid_offset", -10.0, 10.0),
                                ("pca_weight", -100.0, 100.0), ("exponent", 0.0, 10.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (low <= value <= high) or value != value:
                raise InputError(f"{name} must be a number in [{low}, {high}], got {value!r}.")
        return self


@dataclass
class EmbeddingStats:
    """The embedding matrix and its geometry, computed once per model."""

    E: torch.Tensor  # [V, d] float32, CPU
    centroid: torch.Tensor  # [d]
    rho: float  # mean |e_t - c|
    pc1: torch.Tensor  # [d] unit, first principal component of E


_stats: dict[str, EmbeddingStats] = {}


def embedding_stats(lm: LoadedModel) -> EmbeddingStats:
    """Embedding matrix, centroid, spread and first principal component (cached per model)."""
    if lm.model_id in _stats:
        return _stats[lm.model_id]
    E = lm.model.get_input_embeddings().weight.detach().float().cpu()
    centroid = E.mean(0)
    centred = E - centroid
    rho = float(centred.norm(dim=1).mean())
    # torch.pca_lowrank: randomized PCA, exact enough for the top component, cheap on [V, d].
    _u, _s, v = torch.pca_lowrank(centred, q=4, center=False, niter=6)
    pc1 = v[:, 0] / v[:, 0].norm()
    _stats[lm.model_id] = EmbeddingStats(E=E, centroid=centroid, rho=rho, pc1=pc1)
    return _stats[lm.model_id]


def raw_feature_vector(sae: LoadedSAE, feature: int, kind: str) -> torch.Tensor:
    """``W_dec[f]`` or ``W_enc[:, f]`` (float32, CPU)."""
    check_feature(sae, feature)
    if kind == "encoder":
        return sae.W_enc()[:, feature].clone()
    return sae.W_dec()[feature].clone()


def check_feature(sae: LoadedSAE, feature: int) -> int:
    if not isinstance(feature, int) or isinstance(feature, bool) or not 0 <= feature < sae.d_sae:
        raise InputError(f"Feature must be an integer in [0, {sae.d_sae - 1}] for this SAE, got {feature!r}.")
    return feature


def ghost_vector(lm: LoadedModel, sae: LoadedSAE, feature: int, options: VectorOptions) -> torch.Tensor:
    """The feature as a point g in token-embedding space (see the module docstring)."""
    options.check()
    stats = embedding_stats(lm)
    v = raw_feature_vector(sae, feature, options.kind)
    if v.shape[0] != stats.E.shape[1]:
        raise InputError(f"Feature vectors have {v.shape[0]} dims; the embedding has {stats.E.shape[1]}.")
    norm = float(v.norm())
    if norm == 0:
        raise InputError(f"Feature {feature}'s {options.kind} vector is zero (a dead feature).")
    return (options.centroid_offset * stats.centroid + options.scale * stats.rho * v / norm
            + options.pca_weight * stats.rho * stats.pc1)


@dataclass
class TokenList:
    """Tokens ranked by ratio (ascending); ``cos_v`` and ``cos_c`` are the two cosines."""

    token_ids: list[int]
    tokens: list[str]
    ratio: list[float]
    cos_v: list[float]
    cos_c: list[float]


def token_ratios(lm: LoadedModel, g: torch.Tensor, exponent: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ratio, cos(g, e_t), cos(c, e_t)) for every token (float64 for the small denominators)."""
    stats = embedding_stats(lm)
    E = stats.E.double()
    e_norm = E.norm(dim=1).clamp_min(1e-12)
    cos_v = (E @ g.double()) / (e_norm * g.double().norm().clamp_min(1e-12))
    c = stats.centroid.double()
    cos_c = (E @ c) / (e_norm * c.norm().clamp_min(1e-12))
    ratio = (1.0 - cos_v).clamp_min(0.0) ** exponent / (1.0 - cos_c).clamp_min(1e-12)
    return ratio, cos_v, cos_c


def token_list(lm: LoadedModel, sae: LoadedSAE, feature: int, options: VectorOptions, top: int = 100) -> TokenList:
    """The ``top`` tokens with the smallest ratio for this feature vector."""
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in [1, 1000], got {top}.")
    g = ghost_vector(lm, sae, feature, options)
    ratio, cos_v, cos_c = token_ratios(lm, g, options.exponent)
    order = torch.argsort(ratio)[:top]
    ids = order.tolist()
    return TokenList(
        token_ids=ids,
        tokens=[lm.tokenizer.decode([i]) for i in ids],
        ratio=ratio[order].tolist(),
        cos_v=cos_v[order].tolist(),
        cos_c=cos_c[order].tolist(),
    )


def unembedding(lm: LoadedModel) -> torch.Tensor:
    """W_U [V, d] with the final norm's elementwise weight folded in (as TransformerLens folds ln_final)."""
    W_U = lm.model.get_output_embeddings().weight.detach().float().cpu()
    spec = arch_for(lm.model)
    if spec.final_norm:
        norm = get_module(lm.model, spec.final_norm)
        weight = getattr(norm, "weight", None)
        if weight is not None:
            w = weight.detach().float().cpu()
            if "gemma" in spec.family:  # Gemma's RMSNorm multiplies by (1 + weight)
                w = 1.0 + w
            W_U = W_U * w
    return W_U


@dataclass
class LogitEffects:
    positive: list[tuple[str, float]]
    negative: list[tuple[str, float]]
    positive_ids: list[int]
    negative_ids: list[int]


def logit_effects(lm: LoadedModel, sae: LoadedSAE, feature: int, k: int = 10) -> LogitEffects:
    """Top +/- tokens of W_dec[f] @ W_U^T (the feature's direct effect on the logits)."""
    d = raw_feature_vector(sae, feature, "decoder")
    W_U = unembedding(lm)
    if d.shape[0] != W_U.shape[1]:
        raise InputError(f"The SAE decodes to {d.shape[0]} dims; the unembedding reads {W_U.shape[1]}.")
    effects = W_U @ d
    top = torch.topk(effects, k)
    bottom = torch.topk(-effects, k)
    dec = lm.tokenizer.decode
    return LogitEffects(
        positive=[(dec([i]), float(v)) for i, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)],
        negative=[(dec([i]), -float(v)) for i, v in zip(bottom.indices.tolist(), bottom.values.tolist(), strict=True)],
        positive_ids=top.indices.tolist(),
        negative_ids=bottom.indices.tolist(),
    )


def all_logit_top_tokens(lm: LoadedModel, sae: LoadedSAE, k: int = 10, chunk: int = 256) -> np.ndarray:
    """Top-k positive logit-effect token ids for every feature, [d_sae, k] (for search by token)."""
    W_U = unembedding(lm)
    W_dec = sae.W_dec()
    out = np.zeros((sae.d_sae, k), dtype=np.int64)
    for start in range(0, sae.d_sae, chunk):
        block = W_dec[start : start + chunk] @ W_U.T
        out[start : start + chunk] = torch.topk(block, k, dim=1).indices.numpy()
    return out
