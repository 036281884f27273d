"""Features page science: which SAEs are offered, a feature's activations over a text, its record.

Everything here reuses the cached run of the text (``runtime.run``): changing the feature never
re-runs the model. ``feature_record`` is the JSON-able summary the API exposes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from analysis.cache import content_key
from analysis.errors import InputError
from analysis.explain import Example as ExplainExample
from analysis.explain import UnitEvidence, llm_explanation, summary_text
from analysis.features.sae import (
    EMBEDDED_SAE,
    TRAIN_COMMAND,
    LoadedSAE,
    SAEError,
    check_fit,
    embedded_sae_dir,
    embedded_sae_exists,
    in_distribution,
    load_sae,
    trained_sae_dir,
)
from analysis.features.scan import (
    DEFAULT_TOKENS,
    FeatureStats,
    Scan,
    activation_matrix,
    cached_scan,
    correlated_features,
    feature_stats,
    features_by_top_token,
)
from analysis.features.vectors import all_logit_top_tokens, check_feature, logit_effects
from analysis.io import token_ids_for
from analysis.runtime import Runtime
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


def sae_choices(runtime: Runtime) -> list[SAEChoice]:
    """SAEs offered in the picker: the embedded SmolLM2 SAE (shipped, or retrained here)."""
    path = embedded_sae_dir(runtime.settings.cache_dir)
    exists = embedded_sae_exists(runtime.settings.cache_dir)
    where = "retrained here" if path == trained_sae_dir(runtime.settings.cache_dir) else "shipped"
    label = (f"SmolLM2 layer-15 residual SAE (embedded, {where})" if exists
             else f"SmolLM2 SAE - missing: run `{TRAIN_COMMAND}`")
    return [SAEChoice(EMBEDDED_SAE, label, exists)]


def no_sae_message(runtime: Runtime) -> str:
    return (f"No SAE for the embedded SmolLM2 ({embedded_sae_dir(runtime.settings.cache_dir)} is missing). "
            f"Train one with the Train SAE button or `{TRAIN_COMMAND}`, or type an sae-lens release:sae_id / a "
            "local SAE directory.")


def resolve(runtime: Runtime, model_id: str, sae_ref: str | None, field: str | None = "features-sae") -> tuple[Any, LoadedSAE]:
    """(LoadedModel, LoadedSAE) checked to fit each other (both resolved once per request)."""
    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise SAEError(f"{model_id} is an encoder; SAE features here need a causal LM.")
    sae = load_sae(runtime, (sae_ref or EMBEDDED_SAE).strip(), model_id, lm.device, field=field)
    check_fit(sae, lm)
    return lm, sae


@dataclass
class TextActivations:
    """One text's activations for all features at the SAE's site (from the cached run).

    ``outside`` marks the positions the SAE was not trained on (the first token, an attention sink, and
    massive-activation tokens above its ``max_norm``): their activations are kept as encoded but
    rankings and colour scales leave them out."""

    tokens: list[str]
    token_ids: list[int]
    feats: torch.Tensor  # [T, d_sae] float32
    outside: list[bool]

    def feature(self, f: int) -> list[float]:
        return self.feats[:, f].tolist()

    def inside(self) -> torch.Tensor:
        keep = ~torch.tensor(self.outside)
        return self.feats[keep] if bool(keep.any()) else self.feats[:0]

    def top_features(self, k: int = 20) -> list[tuple[int, float]]:
        """Strongest features by max over the in-distribution tokens."""
        body = self.inside()
        if body.shape[0] == 0:
            return []
        best = body.max(0).values
        top = torch.topk(best, min(k, best.numel()))
        return [(int(i), float(v)) for i, v in zip(top.indices, top.values, strict=True) if v > 0]

    def features_at(self, position: int, k: int = 10) -> list[tuple[int, float]]:
        """The most active features at one token (the Tokens page's "features here")."""
        row = self.feats[position]
        top = torch.topk(row, min(k, row.numel()))
        return [(int(i), float(v)) for i, v in zip(top.indices, top.values, strict=True) if v > 0]

    def ranking(self, k: int = 30) -> list[dict[str, Any]]:
        """The prompt-centric view: features ranked by their max on the text, with where they peak and how
        many tokens they are active on."""
        body = self.feats.clone()
        body[torch.tensor(self.outside)] = 0
        best, where = body.max(0)
        count = (body > 0).sum(0)
        top = torch.topk(best, min(k, best.numel()))
        return [{"feature": int(f), "max": float(v), "position": int(where[f]), "token": self.tokens[int(where[f])],
                 "active_tokens": int(count[f])} for f, v in zip(top.indices, top.values, strict=True) if v > 0]


def text_activations(runtime: Runtime, model_id: str, sae: LoadedSAE, text: str, edits: Any = ()) -> TextActivations:
    """``sae.encode`` of the text's activation at the SAE's site (the model runs at most once per text and
    edit list; ``edits`` give the edited model's activations)."""
    run = runtime.run(model_id, text, [sae.site], edits=edits)
    acts = run.act(sae.site)

    def compute() -> TextActivations:
        outside = (~in_distribution(acts[None], 1, sae.max_norm)[0]).tolist()
        return TextActivations(tokens=run.tokens, token_ids=run.token_ids, feats=sae.encode(acts), outside=outside)

    key = (model_id, run.key, sae.ref, sae.site, sae.path)
    return runtime.memo("features-text", 16).get_or_compute(key, compute)


def feature_edit_effect(runtime: Runtime, model_id: str, sae: LoadedSAE, text: str, feature: int,
                        edits: Any) -> dict[str, Any] | None:
    """Feature ``feature`` on ``text``, clean vs edited, over the tokens the SAE was trained on (the dashboard's
    scale): both maxima, the mean |delta| and where it is largest; None when no token is in distribution."""
    clean = text_activations(runtime, model_id, sae, text)
    edited = text_activations(runtime, model_id, sae, text, edits)
    keep = ~torch.tensor(clean.outside)
    before, after = clean.feats[:, feature][keep], edited.feats[:, feature][keep]
    if before.numel() == 0:
        return None
    delta = (after - before).abs()
    return {"feature": feature, "clean_max": float(before.max()), "edited_max": float(after.max()),
            "mean_delta": float(delta.mean()), "where": int(torch.nonzero(keep)[int(delta.argmax())]),
            "edits": ";".join(edit.text for edit in edits)}


def log10_density(density: np.ndarray) -> list[float]:
    """log10 of each feature's firing frequency; NaN for a feature that never fired (the figure counts those)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(density > 0, np.log10(np.where(density > 0, density, 1.0)), np.nan).tolist()


def density_from_training(sae: LoadedSAE) -> np.ndarray | None:
    """Per-feature firing frequency from sae-lens's saved log10 sparsity, when present."""
    if sae.sparsity is None:
        return None
    return (10.0 ** sae.sparsity.numpy()).astype(np.float64)


def decoder_neighbours(runtime: Runtime, sae: LoadedSAE, feature: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` features whose decoder rows point most the same way (cosine; Neuronpedia's "similar")."""

    def unit_rows() -> torch.Tensor:
        w = sae.W_dec()
        return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)

    rows = runtime.memo("features-decoder", 4).get_or_compute(("", sae.ref, sae.path, sae.d_sae), unit_rows)
    cos = rows @ rows[feature]
    cos[feature] = -2.0
    top = torch.topk(cos, k)
    return [(int(i), float(v)) for i, v in zip(top.indices, top.values, strict=True)]


def activation_neighbours(runtime: Runtime, scan: Scan, feature: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` features whose activations over the scan correlate most with this one's."""
    matrix = runtime.memo("features-scan-matrix", 2).get_or_compute(
        (scan.model_id, scan.sae_ref, scan.n_tokens, scan.seconds), lambda: activation_matrix(scan))
    return correlated_features(scan, matrix, feature, k)


def feature_evidence(stats: FeatureStats, feature: int) -> UnitEvidence:
    """The scan's view of a feature in the explainer's terms (top tokens, examples, range)."""
    from collections import Counter

    counts = Counter(e.tokens[e.center] for e in stats.top)
    nonzero = [v for _lo, _hi, ex in stats.bins for v in (e.value for e in ex)]
    return UnitEvidence(kind="feature", name=f"SAE feature {feature}", top_tokens=counts.most_common(8),
                        examples=[ExplainExample(tokens=e.tokens, center=e.center, value=e.value) for e in stats.top],
                        max_act=stats.max_act, median_act=float(np.median(nonzero)) if nonzero else None,
                        frac_active=stats.density)


def feature_explanation(runtime: Runtime, stats: FeatureStats, feature: int, llm: bool = False) -> dict[str, Any]:
    """{"summary": plain text, "llm": one sentence or None} (the LLM only when an endpoint is configured)."""
    evidence = feature_evidence(stats, feature)
    out: dict[str, Any] = {"summary": summary_text(evidence), "llm": None}
    if llm and runtime.settings.openai_base_url:
        key = content_key("feature-llm", stats.feature, stats.n_tokens, stats.max_act, runtime.settings.openai_base_url,
                          runtime.settings.openai_model)
        out["llm"] = runtime.disk.get_or_compute(key, lambda: llm_explanation(runtime.settings, evidence))
    return out


def feature_record(runtime: Runtime, model_id: str, sae_ref: str, feature: int, text: str | None = None,
                   scan_tokens: int = DEFAULT_TOKENS, n_examples: int = 10, llm: bool = False) -> dict[str, Any]:
    """A JSON-able summary of one SAE feature: SAE info, logit effects, density, top examples, related features
    and an explanation (when the corpus scan is cached; ``scan_pending`` otherwise), activations over ``text``."""
    lm, sae = resolve(runtime, model_id, sae_ref)
    check_feature(sae, feature)
    effects = logit_effects(lm, sae, feature)
    record: dict[str, Any] = {
        "model_id": model_id,
        "sae": {"ref": sae.ref, "site": sae.site, "hook_name": sae.hook_name, "d_in": sae.d_in,
                "d_sae": sae.d_sae, "model_name": sae.model_name, "metrics": sae.meta, "path": sae.path},
        "feature": feature,
        "logit_effects": {"positive": [asdict(t) for t in effects.positive],
                          "negative": [asdict(t) for t in effects.negative]},
        "similar_by_decoder": [{"feature": f, "cosine": c} for f, c in decoder_neighbours(runtime, sae, feature)],
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
            correlated=[{"feature": f, "correlation": c} for f, c in activation_neighbours(runtime, scan, feature)],
            explanation=feature_explanation(runtime, stats, feature, llm),
        )
    if text:
        acts = text_activations(runtime, model_id, sae, text)
        record["text"] = {"tokens": acts.tokens, "activations": acts.feature(feature), "outside": acts.outside}
    return record


@dataclass
class SearchHit:
    feature: int
    in_top_activations: int  # how many of the feature's top-10 examples sit on the token
    in_logit_effects: bool  # the token is among the feature's top-10 positive logit effects
    max_act: float


def search_features(runtime: Runtime, model_id: str, sae_ref: str, token: str, scan_tokens: int = DEFAULT_TOKENS,
                    limit: int = 50) -> tuple[str, list[SearchHit]]:
    """Features whose top activations or top logit effects contain ``token`` (the one token search)."""
    lm, sae = resolve(runtime, model_id, sae_ref)
    ids = token_ids_for(lm.tokenizer, token)
    key = content_key("features-logit-top", model_id, sae.ref, sae.site, sae.d_sae, float(sae.W_dec()[:4].sum()))
    logit_top = runtime.disk.get_or_compute(key, lambda: all_logit_top_tokens(lm, sae))
    logit_hits = set(np.nonzero(np.isin(logit_top, ids).any(1))[0].tolist())
    scan = cached_scan(runtime, model_id, sae, scan_tokens)
    act_hits: dict[int, int] = {}
    if scan is not None:
        for tid in ids:
            for f, hits in features_by_top_token(scan, tid):
                act_hits[f] = act_hits.get(f, 0) + hits
    max_acts = scan.max_acts() if scan is not None else None
    hits = [SearchHit(f, act_hits.get(f, 0), f in logit_hits, float(max_acts[f]) if max_acts is not None else 0.0)
            for f in set(logit_hits) | set(act_hits)]
    hits.sort(key=lambda h: (-h.in_top_activations, not h.in_logit_effects, -h.max_act))
    return " / ".join(repr(t) for t in lm.decode(ids)), hits[:limit]


def default_feature(runtime: Runtime, model_id: str, sae: LoadedSAE, text: str | None) -> int:
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
