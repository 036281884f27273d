"""Features page science: which SAEs are offered, a feature's activations over a text, its record.

Everything here reuses the cached run of the text (``runtime.run``): changing the feature never
re-runs the model. ``feature_record`` is the JSON-able summary the API exposes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from analysis.errors import InputError
from analysis.features_sae import (
    EMBEDDED_SAE,
    TRAIN_COMMAND,
    LoadedSAE,
    SAEError,
    check_fit,
    embedded_sae_dir,
    embedded_sae_exists,
    load_sae,
)
from analysis.features_scan import DEFAULT_TOKENS, cached_scan, feature_stats, features_by_top_token
from analysis.features_vectors import all_logit_top_tokens, check_feature, logit_effects
from analysis.settings import EMBEDDED_LM

PRETRAINED_EXAMPLES = {
    "gpt2": "gpt2-small-res-jb:blocks.8.hook_resid_pre",
    "google/gemma-2b": "gemma-2b-res-jb:blocks.6.hook_resid_post",
    "EleutherAI/pythia-70m-deduped": "pythia-70m-deduped-res-sm:blocks.3.hook_resid_post",
}


@dataclass
class SAEChoice:
    value: str
    label: str
    available: bool


def sae_choices(runtime) -> list[SAEChoice]:
    """SAEs offered in the picker: the embedded one when ``make sae`` has produced it."""
    cache = runtime.settings.cache_dir
    exists = embedded_sae_exists(cache)
    label = ("SmolLM2 layer-15 residual SAE (embedded, make sae)" if exists
             else f"SmolLM2 SAE - not trained yet: run `{TRAIN_COMMAND}`")
    return [SAEChoice(EMBEDDED_SAE, label, exists)]


def no_sae_message(runtime) -> str:
    return (f"No SAE for the embedded SmolLM2 yet ({embedded_sae_dir(runtime.settings.cache_dir)} is missing). "
            f"Train one with `{TRAIN_COMMAND}` (about 20 minutes on 2 CPU cores) or type an sae-lens "
            "release:sae_id / a local SAE directory.")


def resolve(runtime, model_id: str, sae_ref: str) -> tuple[Any, LoadedSAE]:
    """(LoadedModel, LoadedSAE) checked to fit each other."""
    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise SAEError(f"{model_id} is an encoder; SAE features here need a causal LM.")
    sae = load_sae(sae_ref or EMBEDDED_SAE, runtime.settings.cache_dir, device=lm.device)
    check_fit(sae, lm)
    return lm, sae


@dataclass
class TextActivations:
    """One text's activations for all features at the SAE's site (from the cached run)."""

    tokens: list[str]
    token_ids: list[int]
    feats: torch.Tensor  # [T, d_sae] float32

    def feature(self, f: int) -> list[float]:
        return self.feats[:, f].tolist()

    def top_features(self, k: int = 20) -> list[tuple[int, float]]:
        """Strongest features by max over tokens, ignoring the first token (an attention sink)."""
        body = self.feats[1:] if self.feats.shape[0] > 1 else self.feats
        best = body.max(0).values
        top = torch.topk(best, min(k, best.numel()))
        return [(int(i), float(v)) for i, v in zip(top.indices, top.values, strict=True) if v > 0]


def text_activations(runtime, model_id: str, sae: LoadedSAE, text: str) -> TextActivations:
    """``sae.encode`` of the text's activation at the SAE's site (the model runs at most once per text)."""
    run = runtime.run(model_id, text, [sae.site])
    acts = run.act(sae.site)
    return TextActivations(tokens=run.tokens, token_ids=run.token_ids, feats=sae.encode(acts))


def density_from_training(sae: LoadedSAE) -> np.ndarray | None:
    """Per-feature firing frequency from sae-lens's saved log10 sparsity, when present."""
    if sae.sparsity is None:
        return None
    return (10.0 ** sae.sparsity.numpy()).astype(np.float64)


def feature_record(runtime, model_id: str, sae_ref: str, feature: int, text: str | None = None,
                   scan_tokens: int = DEFAULT_TOKENS, n_examples: int = 10) -> dict[str, Any]:
    """A JSON-able summary of one SAE feature: SAE info, logit effects, density, top examples
    (when the corpus scan is cached; ``scan_pending`` otherwise), and activations over ``text``."""
    lm, sae = resolve(runtime, model_id, sae_ref)
    check_feature(sae, feature)
    effects = logit_effects(lm, sae, feature)
    record: dict[str, Any] = {
        "model_id": model_id,
        "sae": {"ref": sae.ref, "site": sae.site, "hook_name": sae.hook_name, "d_in": sae.d_in,
                "d_sae": sae.d_sae, "model_name": sae.model_name, "metrics": sae.meta},
        "feature": feature,
        "logit_effects": {"positive": effects.positive, "negative": effects.negative},
    }
    train_density = density_from_training(sae)
    if train_density is not None:
        record["training_density"] = float(train_density[feature])
    scan = cached_scan(runtime, model_id, sae, scan_tokens)
    if scan is None:
        record["scan_pending"] = True
    else:
        stats = feature_stats(lm, scan, feature, n_top=n_examples)
        record.update(
            scan_tokens=scan.n_tokens, density=stats.density, max_activation=stats.max_act,
            top_examples=[asdict(e) for e in stats.top],
            quantile_bins=[{"low": lo, "high": hi, "examples": [asdict(e) for e in ex]} for lo, hi, ex in stats.bins],
            histogram={"counts": stats.hist_counts, "edges": stats.hist_edges},
        )
    if text:
        acts = text_activations(runtime, model_id, sae, text)
        record["text"] = {"tokens": acts.tokens, "activations": acts.feature(feature)}
    return record


def token_id_for(lm, token: str) -> int:
    """The vocabulary id of ``token`` (exact token text, else the first token of its encoding)."""
    if not token:
        raise InputError("Type a token to search for.")
    ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputError(f"'{token}' does not tokenize to anything.")
    return int(ids[0])


@dataclass
class SearchHit:
    feature: int
    in_top_activations: int  # how many of the feature's top-10 examples sit on the token
    in_logit_effects: bool  # the token is among the feature's top-10 positive logit effects
    max_act: float


def search_features(runtime, model_id: str, sae_ref: str, token: str, scan_tokens: int = DEFAULT_TOKENS,
                    limit: int = 50) -> tuple[str, list[SearchHit]]:
    """Features whose top activations or top logit effects contain ``token``."""
    lm, sae = resolve(runtime, model_id, sae_ref)
    tid = token_id_for(lm, token)
    key = ("features-logit-top", model_id, sae.ref, sae.site, sae.d_sae, float(sae.W_dec()[:4].sum()))
    from analysis.cache import content_key

    logit_top = runtime.disk.get_or_compute(content_key(*key), lambda: all_logit_top_tokens(lm, sae))
    logit_hits = set(np.nonzero((logit_top == tid).any(1))[0].tolist())
    scan = cached_scan(runtime, model_id, sae, scan_tokens)
    act_hits = dict(features_by_top_token(scan, tid)) if scan is not None else {}
    max_acts = scan.max_acts() if scan is not None else None
    hits = [SearchHit(f, act_hits.get(f, 0), f in logit_hits, float(max_acts[f]) if max_acts is not None else 0.0)
            for f in set(logit_hits) | set(act_hits)]
    hits.sort(key=lambda h: (-h.in_top_activations, not h.in_logit_effects, -h.max_act))
    return lm.tokenizer.decode([tid]), hits[:limit]


def default_feature(runtime, model_id: str, sae: LoadedSAE, text: str | None) -> int:
    """A feature worth showing first: the strongest on the text, else feature 0."""
    if text:
        try:
            top = text_activations(runtime, model_id, sae, text).top_features(1)
            if top:
                return top[0][0]
        except InputError:
            pass
    return 0


__all__ = ["EMBEDDED_LM", "feature_record", "resolve", "sae_choices", "search_features", "text_activations"]
