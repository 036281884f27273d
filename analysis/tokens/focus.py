"""The selected token as a focus other pages open: the MLP neurons and SAE features most active there.

Both read the Tokens page's cached run when it holds the sites (a long text on a big model captures MLP
neurons on first use: one more forward then, once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.capture import Run
from analysis.errors import GlassboxError, InputError
from analysis.runtime import Runtime


@dataclass(frozen=True)
class UnitHere:
    """One unit's activation at the focus token: an MLP neuron (layer, unit) or an SAE feature (unit)."""

    layer: int | None
    unit: int
    value: float


def neurons_here(runtime: Runtime, run: Run, pos: int, k: int = 10) -> list[UnitHere]:
    """The ``k`` MLP neurons (``mlp.hook_post``, every layer) with the highest activation at ``pos``."""
    lm = runtime.model(run.model_id)
    if not lm.info.is_causal:
        raise InputError("Neurons here: the neuron pages cover causal language models, not encoders.")
    if not 0 <= pos < run.n_tokens:
        raise InputError(f"Token {pos} is out of range: this text has tokens 0..{run.n_tokens - 1}.")
    sites = [f"blocks.{layer}.mlp.hook_post" for layer in range(lm.info.n_layers)]
    full = runtime.run(run.model_id, run.text, sites)
    values = torch.stack([full.act(site)[pos].float() for site in sites])  # [layers, d_mlp]
    top = values.flatten().topk(min(k, values.numel()))
    width = values.shape[1]
    return [UnitHere(int(i) // width, int(i) % width, float(v)) for v, i in zip(top.values, top.indices, strict=True)]


def features_here(runtime: Runtime, run: Run, pos: int, sae_ref: str = "embedded", k: int = 8) -> list[UnitHere]:
    """The ``k`` features of the SAE ``sae_ref`` most active at ``pos`` ([] when that SAE does not fit this
    model or is not there)."""
    from analysis.features import load_sae
    from analysis.features.sae import check_fit

    lm = runtime.model(run.model_id)
    try:
        sae = load_sae(runtime, sae_ref, run.model_id)
        check_fit(sae, lm)
    except GlassboxError:
        return []
    acts = runtime.run(run.model_id, run.text, [sae.site]).act(sae.site)[pos:pos + 1]
    feats = sae.encode(acts)[0]
    top = feats.topk(min(k, feats.numel()))
    return [UnitHere(None, int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True) if v > 0]
