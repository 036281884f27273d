"""Feature vectors in embedding space: the ghost token, token lists by the cosine-distance ratio, logit effects.

After Watkins' SAE "multitool" (definition trees and token lists for Gemma-2B features), reproduced exactly:
a feature gives two vectors in the model's representation space, its encoder column ``W_enc[:, f]`` and
its decoder row ``W_dec[f]``; from the chosen one ``v`` the notebook builds a point in token-embedding space

    direction = (1 - w) * v / |v| + w * p1          (not renormalised)
    g = c + s * direction    (centroid offset on)    or    g = s * direction    (off)

with ``c`` the centroid (mean) of the embedding matrix E, ``p1`` the unit first principal component of E,
``w`` the "PCA 1st component weighting" and ``s`` the scaling factor, an absolute L2 norm: the notebook's
3.8 is "the approximate mean token embedding distance-from-centroid" of Gemma-2B. Here ``s`` defaults to the
same quantity measured on the model in use (``rho``, 2.39 on SmolLM2), so every model's ghost token sits at a
typical token's distance from the centroid; the notebook's literal settings (s = 3.8, w, offset) are
reproducible by typing them. Token lists rank every token ``t`` by

    ratio(t) = (1 - cos(g, e_t)) ** m / (1 - cos(c, e_t))

(smallest first): tokens close to the ghost token and far from the generic centroid direction. Both the
token lists and the definition tree use the same ``g``. Hand-written because no library provides these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.errors import InputError
from analysis.features.sae import LoadedSAE
from analysis.models import LoadedModel
from analysis.params import parse_choice, parse_float
from analysis.readout import LogitReadout, input_embedding, logit_readout, top_token_ids
from analysis.runtime import Runtime

VECTOR_KINDS = ("decoder", "encoder")
NOTEBOOK_SCALE = 3.8  # the original multitool's default scaling on Gemma-2B (its rho)


@dataclass(frozen=True)
class VectorOptions:
    """How a feature becomes a point in embedding space (the original tool's controls)."""

    kind: str = "decoder"  # decoder | encoder
    centroid_offset: bool = True  # g = c + s * direction (on) or s * direction (off)
    scale: float | None = None  # s, an absolute L2 norm; None = the model's rho (mean distance from the centroid)
    pca_weight: float = 0.0  # w, mixes p1 into the direction
    exponent: float = 1.4  # m, numerator exponent of the token-list ratio

    def check(self) -> VectorOptions:
        parse_choice(self.kind, "Vector", VECTOR_KINDS)
        if self.scale is not None:
            parse_float(self.scale, "Scaling s", 0, 1000, low_open=True, field="features-scale")
        parse_float(self.pca_weight, "PCA-1 weight w", -10, 10, field="features-pca")
        parse_float(self.exponent, "Exponent m", 0, 10, field="features-exponent")
        return self


@dataclass
class EmbeddingStats:
    """The embedding matrix and its geometry, computed once per model."""

    E: torch.Tensor  # [V, d] float32, CPU
    centroid: torch.Tensor  # [d]
    rho: float  # mean |e_t - c|: the default scaling
    mean_norm: float  # mean |e_t|
    pc1: torch.Tensor  # [d] unit, first principal component of E (scikit-learn's sign convention)


def first_principal_component(E: np.ndarray) -> np.ndarray:
    """scikit-learn's ``PCA(n_components=1).fit(E).components_[0]``, as the notebook computes p1: E centred by
    PCA, unit length, the sign by scikit-learn's convention (the largest |entry| positive). The exact
    ``covariance_eigh`` solver (a d x d eigenproblem) instead of the randomized one that ``auto`` picks for a
    large vocabulary, so p1 is the same in every process."""
    from sklearn.decomposition import PCA

    return PCA(n_components=1, svd_solver="covariance_eigh").fit(E).components_[0].astype(np.float32)


def embedding_stats(runtime: Runtime, lm: LoadedModel) -> EmbeddingStats:
    """Embedding matrix, centroid, spread and first principal component (once per model)."""

    def compute() -> EmbeddingStats:
        E = input_embedding(lm)  # as hook_embed sees it (Gemma's sqrt(d) scale included)
        centroid = E.mean(0)
        centred = E - centroid
        pc1 = torch.from_numpy(first_principal_component(E.numpy()))
        return EmbeddingStats(E=E, centroid=centroid, rho=float(centred.norm(dim=1).mean()),
                              mean_norm=float(E.norm(dim=1).mean()), pc1=pc1)

    return runtime.memo("features-embedding", 4).get_or_compute((lm.model_id,), compute)


def check_feature(sae: LoadedSAE, feature: int, field: str | None = "features-feature") -> int:
    if not isinstance(feature, int) or isinstance(feature, bool) or not 0 <= feature < sae.d_sae:
        raise InputError(f"Feature must be a whole number from 0 to {sae.d_sae - 1:,} for this SAE; got {feature!r}.",
                         field=field)
    return feature


def raw_feature_vector(sae: LoadedSAE, feature: int, kind: str) -> torch.Tensor:
    """``W_dec[f]`` or ``W_enc[:, f]`` (float32, CPU)."""
    check_feature(sae, feature)
    if kind == "encoder":
        return sae.W_enc()[:, feature].clone()
    return sae.W_dec()[feature].clone()


def ghost_vector(runtime: Runtime, lm: LoadedModel, sae: LoadedSAE, feature: int, options: VectorOptions) -> torch.Tensor:
    """The feature as a point g in token-embedding space (the module docstring's formula, exactly)."""
    options.check()
    stats = embedding_stats(runtime, lm)
    v = raw_feature_vector(sae, feature, options.kind)
    if v.shape[0] != stats.E.shape[1]:
        raise InputError(f"Feature vectors have {v.shape[0]} dims; the embedding has {stats.E.shape[1]}.")
    norm = float(v.norm())
    if norm == 0:
        raise InputError(f"Feature {feature}'s {options.kind} vector is zero (a dead feature).")
    w = float(options.pca_weight)
    s = stats.rho if options.scale is None else float(options.scale)
    direction = (1.0 - w) * v / norm + w * stats.pc1
    return stats.centroid + s * direction if options.centroid_offset else s * direction


@dataclass
class TokenList:
    """Tokens ranked by ratio (ascending); ``cos_v`` and ``cos_c`` are the two cosines."""

    token_ids: list[int]
    tokens: list[str]
    ratio: list[float]
    cos_v: list[float]
    cos_c: list[float]


def token_ratios(runtime: Runtime, lm: LoadedModel, g: torch.Tensor,
                 exponent: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ratio, cos(g, e_t), cos(c, e_t)) for every token (float64 for the small denominators)."""
    stats = embedding_stats(runtime, lm)
    E = stats.E.double()
    e_norm = E.norm(dim=1).clamp_min(1e-12)
    cos_v = (E @ g.double()) / (e_norm * g.double().norm().clamp_min(1e-12))
    c = stats.centroid.double()
    cos_c = (E @ c) / (e_norm * c.norm().clamp_min(1e-12))
    ratio = (1.0 - cos_v).clamp_min(0.0) ** exponent / (1.0 - cos_c).clamp_min(1e-12)
    return ratio, cos_v, cos_c


def token_list(runtime: Runtime, lm: LoadedModel, sae: LoadedSAE, feature: int, options: VectorOptions,
               top: int = 100) -> TokenList:
    """The ``top`` tokens with the smallest ratio for this feature's ghost token."""
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in [1, 1000], got {top}.")
    g = ghost_vector(runtime, lm, sae, feature, options)
    ratio, cos_v, cos_c = token_ratios(runtime, lm, g, options.exponent)
    order = torch.argsort(ratio)[:top]
    ids = order.tolist()
    return TokenList(token_ids=ids, tokens=lm.decode(ids), ratio=ratio[order].tolist(), cos_v=cos_v[order].tolist(),
                     cos_c=cos_c[order].tolist())


def logit_effects(lm: LoadedModel, sae: LoadedSAE, feature: int, k: int = 10) -> LogitReadout:
    """Top +/- tokens of the feature's decoder row through the final norm's gain and the unembedding."""
    return logit_readout(lm, raw_feature_vector(sae, feature, "decoder"), k)


def all_logit_top_tokens(lm: LoadedModel, sae: LoadedSAE, k: int = 10) -> np.ndarray:
    """Top-k positive logit-effect token ids for every feature, [d_sae, k] (for search by token)."""
    return top_token_ids(lm, sae.W_dec(), k)
