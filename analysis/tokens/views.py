"""The science of the Tokens page: pure functions over captured Runs (no Dash, no model re-run).

Capture sites (chosen once per model+text so that no tool, layer, head or token change re-runs the
model): for every layer the residual stream (block input, after attention, block output), the
attention and MLP outputs, the MLP neurons, and q/k before and after rotary (attention is
recomputed per row from them, see :mod:`analysis.tokens.attention`). Memory for SmolLM2 at 1024
tokens is ~0.8 GB (fp32); when the estimate exceeds half the run-cache budget (a 7B model at 1024
tokens), the ``light`` profile keeps only the residual stream and q/k, and the other site kinds are
captured on first use (one extra forward, noted in the page).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.capture import Run
from analysis.errors import InputError
from analysis.models import LoadedModel, ModelInfo
from analysis.runtime import Runtime
from analysis.sites import SITE_LABELS, arch_for, site_supported
from analysis.tokens.attention import (
    ROPE_MODES,
    AttentionGrid,
    AttnSpec,
    attention_grid,
    attention_sites,
    attention_values,
    attn_spec,
)
from analysis.tokens.stats import NORMALIZATIONS, normalize

TOOLS = ("predictions", "loss", "attention", "similarity", "sum", "dimension", "edit")
TOOL_LABELS = {
    "predictions": "Predictions (p of the true next token)",
    "loss": "Cross-entropy loss",
    "attention": "Attention",
    "similarity": "Similarity",
    "sum": "Activation sum (Σ|x|)",
    "dimension": "One dimension's value",
    "edit": "Edit effect (KL clean ‖ edited)",
}
SITE_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "mlp.hook_post")
CORE_KINDS = ("hook_resid_pre", "hook_resid_post")
SIMILARITIES = ("tokens", "prev_layer", "prev_residual")
SIMILARITY_LABELS = {"tokens": "to the selected token", "prev_layer": "to the previous layer",
                     "prev_residual": "to the previous residual"}
# The residual stream each site kind was computed from ("previous residual").
PREV_RESIDUAL = {
    "hook_resid_pre": ("hook_resid_mid", -1),
    "hook_resid_mid": ("hook_resid_pre", 0),
    "hook_attn_out": ("hook_resid_pre", 0),
    "hook_mlp_out": ("hook_resid_mid", 0),
    "hook_resid_post": ("hook_resid_mid", 0),
}


def site_kind_label(kind: str) -> str:
    return SITE_LABELS.get(kind, kind)


# ---- capture profile ---------------------------------------------------------------------------

def estimate_bytes(info: ModelInfo, n_tokens: int, kinds: tuple[str, ...] = SITE_KINDS, rotary: bool = True) -> int:
    """Bytes of the page's capture for ``n_tokens`` (resid_pre shares storage with resid_post)."""
    width = {"hook_resid_pre": 0, "mlp.hook_post": info.d_mlp}
    per_layer = sum(width.get(k, info.d_model) for k in kinds)
    per_layer += (2 if rotary else 1) * (info.n_heads + info.n_kv_heads) * info.d_head
    elem = 2 if info.dtype in ("float16", "bfloat16") else 4
    return n_tokens * (info.n_layers * per_layer * elem + 4 * info.vocab_size)


def page_kinds(info: ModelInfo, n_tokens: int, budget: int) -> tuple[str, ...]:
    """All site kinds when they fit in ``budget`` bytes, else the light profile."""
    return SITE_KINDS if estimate_bytes(info, n_tokens) <= budget else CORE_KINDS


def model_attn_spec(runtime: Runtime, lm: LoadedModel) -> AttnSpec:
    """The model's attention scaling and masking, read once per model."""
    return runtime.memo("tokens-attn-spec", 16).get_or_compute((lm.model_id,), lambda: attn_spec(lm))


def page_sites(runtime: Runtime, lm: LoadedModel, kinds: tuple[str, ...]) -> list[str]:
    """The capture sites for these site kinds plus q/k (pre and post rotary) at every layer."""
    spec = arch_for(lm.model)
    aspec = model_attn_spec(runtime, lm)
    sites: list[str] = []
    for layer in range(lm.info.n_layers):
        sites += [f"blocks.{layer}.{k}" for k in kinds if site_supported(spec, k)]
        sites += attention_sites(aspec, layer)
    return sites


def needed_kinds(tool: str, kind: str, similarity: str) -> set[str]:
    """Site kinds a view reads (for the light profile's capture on first use)."""
    if tool in ("predictions", "loss", "attention"):
        return set()
    kinds = {kind}
    if tool == "similarity" and similarity == "prev_residual" and kind in PREV_RESIDUAL:
        kinds.add(PREV_RESIDUAL[kind][0])
    return kinds


# ---- derived products (one runtime memo, keyed by the run, dropped with its model) ------------

def _memoized(runtime: Runtime, run: Run, key: tuple, compute: Any) -> Any:
    """``compute()`` once per (run, key); paint and panel callbacks run in parallel threads."""
    return runtime.memo("tokens-views", 64).get_or_compute((run.model_id, run.key, *key), compute)


# ---- predictions and loss ----------------------------------------------------------------------

@dataclass
class NextTokenStats:
    """Per position t (predicting token t+1): top-k ids/probs, the true token's prob/rank, the loss."""

    top_ids: np.ndarray  # [T, k]
    top_probs: np.ndarray  # [T, k]
    true_prob: np.ndarray  # [T] (NaN at the last position)
    true_rank: np.ndarray  # [T] 1-based (0 at the last position)
    loss: np.ndarray  # [T] cross-entropy in nats (NaN at the last position)


def next_token_stats(runtime: Runtime, run: Run, k: int = 5, chunk: int = 256) -> NextTokenStats:
    """Softmax of the model's logits at every position, computed once per run (chunked)."""
    def compute() -> NextTokenStats:
        if run.logits is None:
            raise InputError("This model has no next-token predictions (an encoder): pick attention or activations.")
        t = run.n_tokens
        ids = torch.tensor(run.token_ids)
        top_ids, top_probs = [], []
        true_prob = np.full(t, np.nan)
        true_rank = np.zeros(t, dtype=np.int64)
        loss = np.full(t, np.nan)
        for start in range(0, t, chunk):
            logp = torch.log_softmax(run.logits[start:start + chunk].float(), dim=-1).cpu()
            vals, idx = logp.topk(k, dim=-1)
            top_ids.append(idx.numpy())
            top_probs.append(vals.exp().numpy())
            stop = min(start + chunk, t - 1)
            if stop > start:
                nxt = ids[start + 1:stop + 1]
                rows = logp[: stop - start]
                lp = rows.gather(1, nxt[:, None])[:, 0]
                true_prob[start:stop] = lp.exp().numpy()
                loss[start:stop] = (-lp).numpy()
                true_rank[start:stop] = ((rows > lp[:, None]).sum(dim=1) + 1).numpy()
        return NextTokenStats(np.concatenate(top_ids), np.concatenate(top_probs), true_prob, true_rank, loss)

    return _memoized(runtime, run, ("next", k), compute)


def edited_runs(runtime: Runtime, runs: list[Run], edits: list) -> list[Run] | None:
    """The open samples run once more with the shared edit list (logits only; cached by text and edits)."""
    if not edits:
        return None
    return [runtime.run(r.model_id, r.text, [], edits=edits) for r in runs]


def edit_shift(runtime: Runtime, clean: Run, edited: Run, chunk: int = 256) -> np.ndarray:
    """KL(clean ‖ edited) of the next-token distribution at every position (nats): what the edit list
    changes at each token; 0 before the first edited position of a causal model."""
    if clean.logits is None or edited.logits is None:
        raise InputError("Edit effects need next-token predictions: this model is an encoder.")

    def compute() -> np.ndarray:
        out = np.zeros(clean.n_tokens)
        for start in range(0, clean.n_tokens, chunk):
            logp = torch.log_softmax(clean.logits[start:start + chunk].float(), dim=-1)
            logq = torch.log_softmax(edited.logits[start:start + chunk].float(), dim=-1)
            out[start:start + chunk] = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0).numpy()
        return out

    return _memoized(runtime, clean, ("edit-shift", edited.key), compute)


@dataclass
class Prediction:
    token: str
    token_id: int
    prob: float
    is_true: bool


@dataclass
class PredictionPanel:
    """Top-k next-token predictions at one position, with the true next token marked."""

    position: int
    token: str
    top: list[Prediction]
    true_token: str | None
    true_prob: float | None
    true_rank: int | None
    loss: float | None


def predictions(runtime: Runtime, lm: LoadedModel, run: Run, pos: int, k: int = 5) -> PredictionPanel:
    stats = next_token_stats(runtime, run, k)
    _check_pos(run, pos)
    true_id = run.token_ids[pos + 1] if pos + 1 < run.n_tokens else None
    ids = [int(i) for i in stats.top_ids[pos]]
    top = [Prediction(text, i, float(p), i == true_id)
           for text, i, p in zip(lm.decode(ids), ids, stats.top_probs[pos], strict=True)]
    last = true_id is None
    return PredictionPanel(
        position=pos, token=run.tokens[pos], top=top,
        true_token=None if last else run.tokens[pos + 1],
        true_prob=None if last else float(stats.true_prob[pos]),
        true_rank=None if last else int(stats.true_rank[pos]),
        loss=None if last else float(stats.loss[pos]),
    )


# ---- activations -------------------------------------------------------------------------------

def _check_pos(run: Run, pos: int) -> None:
    if not 0 <= pos < run.n_tokens:
        raise InputError(f"Token {pos} is out of range: this sample has tokens 0..{run.n_tokens - 1}.")


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise InputError(f"Layer {layer} is out of range: this model has layers 0..{n_layers - 1}.")


def site_matrix(runtime: Runtime, run: Run, kind: str, layer: int, norm: str = "none") -> torch.Tensor:
    """[T, d] activations of one site kind at one layer, normalized per token (memoized)."""
    if kind not in SITE_KINDS:
        raise InputError(f"Unknown site '{kind}': use one of {', '.join(SITE_KINDS)}.")
    if norm not in NORMALIZATIONS:
        raise InputError(f"Unknown normalization '{norm}': use one of {', '.join(NORMALIZATIONS)}.")
    return _memoized(runtime, run, ("site", kind, layer, norm),
                     lambda: normalize(run.act(f"blocks.{layer}.{kind}"), norm).cpu())


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [T, d] with [T, d] or with one [d] vector.

    Written out (dot / norms) because torch.nn.functional.cosine_similarity on an expanded
    [d] vector took ~35 ms for 512 tokens here; numpy avoids torch's thread-pool hand-offs, which
    cost 10-20 ms per small op on a busy 2-core machine.
    """
    an = a.float().cpu().numpy()
    bn = b.float().cpu().numpy()
    norms = np.maximum(np.sqrt(np.einsum("td,td->t", an, an)), 1e-12)
    if bn.ndim == 1:
        out = (an @ bn) / (norms * max(float(np.sqrt(bn @ bn)), 1e-12))
    else:
        out = np.einsum("td,td->t", an, bn) / (norms * np.maximum(np.sqrt(np.einsum("td,td->t", bn, bn)), 1e-12))
    return torch.from_numpy(out.astype(np.float32))


def similarity_values(runtime: Runtime, run: Run, kind: str, layer: int, pos: int, which: str,
                      norm: str = "none", reference: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarities [T] at one site.

    ``tokens``: every token vs the selected token's vector (``reference``, possibly from another
    sample; default: token ``pos`` of this run). ``prev_layer``: each token vs the same site one layer
    earlier. ``prev_residual``: each token vs the residual stream its sublayer read
    (:data:`PREV_RESIDUAL`).
    """
    x = site_matrix(runtime, run, kind, layer, norm)
    if which == "tokens":
        if reference is None:
            _check_pos(run, pos)
            reference = x[pos]
        if reference.shape[-1] != x.shape[-1]:
            raise InputError("The selected token's vector and this site have different widths.")
        return cosine_rows(x, reference)
    if which == "prev_layer":
        if layer == 0:
            raise InputError("Layer 0 has no previous layer: pick layer ≥ 1 for this similarity.")
        return cosine_rows(x, site_matrix(runtime, run, kind, layer - 1, norm))
    if which == "prev_residual":
        if kind not in PREV_RESIDUAL:
            raise InputError(f"'{site_kind_label(kind)}' has the MLP width, not the residual width: "
                             "pick a residual/attention/MLP-output site for this similarity.")
        prev_kind, offset = PREV_RESIDUAL[kind]
        if layer + offset < 0:
            raise InputError("Layer 0's block input has no previous residual: pick layer ≥ 1.")
        return cosine_rows(x, site_matrix(runtime, run, prev_kind, layer + offset, norm))
    raise InputError(f"Unknown similarity '{which}': use one of {', '.join(SIMILARITIES)}.")


def activation_sums(runtime: Runtime, run: Run, kind: str, layer: int, norm: str = "none") -> torch.Tensor:
    """Σ|x| per token at one site."""
    return torch.from_numpy(np.abs(site_matrix(runtime, run, kind, layer, norm).numpy()).sum(axis=-1))


def dimension_values(runtime: Runtime, run: Run, kind: str, layer: int, dim: int, norm: str = "none") -> torch.Tensor:
    x = site_matrix(runtime, run, kind, layer, norm)
    if not 0 <= dim < x.shape[1]:
        raise InputError(f"Dimension {dim} is out of range: this site has dimensions 0..{x.shape[1] - 1}.")
    return x[:, dim]


def token_vector(runtime: Runtime, run: Run, kind: str, layer: int, pos: int, norm: str = "none") -> np.ndarray:
    _check_pos(run, pos)
    return site_matrix(runtime, run, kind, layer, norm)[pos].numpy().astype(np.float32)


def vector_npy(vector: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vector.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def vector_csv(vector: np.ndarray) -> str:
    return "dim,value\n" + "".join(f"{i},{float(v):.9g}\n" for i, v in enumerate(vector))


# ---- one view: values for every open sample ---------------------------------------------------

@dataclass
class ViewRequest:
    """Everything that decides the token colouring (plain values, from the page controls)."""

    tool: str = "predictions"
    layer: int = 0
    head: int | None = 0  # None = mean over heads
    kind: str = "hook_resid_post"
    rope: str = "full"
    direction: str = "from"
    similarity: str = "tokens"
    dim: int = 0
    norm: str = "none"
    sample: int = 0  # which open sample holds the selected token
    pos: int = 0


@dataclass
class Colouring:
    """Per-sample values and the shared colour scale (min, divider, max)."""

    values: list[list[float | None]]
    lo: float
    mid: float
    hi: float
    label: str
    diverging: bool
    fixed: bool = False  # scale fixed by the quantity (probabilities, weights), not by the data
    notes: list[str] = field(default_factory=list)


def _scale(arrays: list[np.ndarray], diverging: bool) -> tuple[float, float, float]:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if finite.size == 0:
        return 0.0, 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if diverging:
        m = max(abs(lo), abs(hi), 1e-12)
        return -m, 0.0, m
    return lo, lo, hi if hi > lo else lo + 1.0


def _round(values: np.ndarray, digits: int = 4) -> list[float | None]:
    out: list[float | None] = []
    for v in values.tolist():
        out.append(None if v != v or v in (float("inf"), float("-inf")) else float(f"{v:.{digits}g}"))
    return out


def compute_view(runtime: Runtime, runs: list[Run], lm: LoadedModel, req: ViewRequest,
                 edited: list[Run] | None = None) -> Colouring:
    """The colouring of every open sample for one tool (shared colour scale across samples); ``edited``
    (the same texts run with the shared edit list) feeds the edit-effect tool."""
    if req.tool not in TOOLS:
        raise InputError(f"Unknown tool '{req.tool}': use one of {', '.join(TOOLS)}.")
    if not 0 <= req.sample < len(runs):
        raise InputError(f"Sample {req.sample} is not open (open samples: 0..{len(runs) - 1}).")
    sel = runs[req.sample]
    _check_pos(sel, req.pos)
    info = lm.info
    if req.tool not in ("predictions", "loss", "edit"):
        _check_layer(req.layer, info.n_layers)
    notes: list[str] = []
    arrays: list[np.ndarray] = []
    diverging, fixed = False, False
    if req.tool == "predictions":
        arrays = [next_token_stats(runtime, r).true_prob for r in runs]
        lo, mid, hi, fixed = 0.0, 0.0, 1.0, True
        label = "p(true next token | up to this token)"
    elif req.tool == "edit":
        if not edited:
            raise InputError("The edit-effect tool needs an edit list: open Edits above and type one "
                             "(e.g. neuron:L5.N123).")
        arrays = [edit_shift(runtime, c, e) for c, e in zip(runs, edited, strict=True)]
        label = "KL(clean ‖ edited) of the next-token distribution (nats)"
        lo, mid, hi = _scale(arrays, False)
        lo = mid = 0.0
    elif req.tool == "loss":
        arrays = [next_token_stats(runtime, r).loss for r in runs]
        label = "cross-entropy of the next token (nats)"
        lo, mid, hi = _scale(arrays, False)
        lo = mid = 0.0
    elif req.tool == "attention":
        spec = model_attn_spec(runtime, lm)
        if req.rope not in ROPE_MODES:
            raise InputError(f"Unknown RoPE mode '{req.rope}': use one of {', '.join(ROPE_MODES)}.")
        if not spec.rotary and req.rope != "full":
            notes.append("This model has no rotary embedding: applied and not applied give the same scores.")
        for i, r in enumerate(runs):
            pos = req.pos if i == req.sample else min(req.pos, r.n_tokens - 1)
            arrays.append(attention_values(r, spec, req.layer, req.head, pos, req.rope, req.direction).numpy())
        head = "mean of heads" if req.head is None else f"head {req.head}"
        what = "from" if req.direction == "from" else "to"
        label = f"attention {what} token {req.pos}, L{req.layer} {head}, {req.rope.replace('_', ' ')}"
        if len(runs) > 1:
            notes.append("Other samples show attention at the same position.")
        if req.rope == "full":
            lo, mid, hi, fixed = 0.0, 0.0, 1.0, True
        else:
            diverging = True
            lo, mid, hi = _scale(arrays, True)
    else:
        x_sel = site_matrix(runtime, sel, req.kind, req.layer, req.norm)
        where = f"L{req.layer} {site_kind_label(req.kind)}"
        if req.tool == "similarity":
            ref = x_sel[req.pos] if req.similarity == "tokens" else None
            arrays = [similarity_values(runtime, r, req.kind, req.layer, req.pos, req.similarity, req.norm, ref).numpy()
                      for r in runs]
            lo, mid, hi, diverging, fixed = -1.0, 0.0, 1.0, True, True
            label = f"cosine {SIMILARITY_LABELS.get(req.similarity, req.similarity)}, {where}"
        elif req.tool == "sum":
            arrays = [activation_sums(runtime, r, req.kind, req.layer, req.norm).numpy() for r in runs]
            lo, mid, hi = _scale(arrays, False)
            label = f"Σ|x|, {where}"
        else:
            arrays = [dimension_values(runtime, r, req.kind, req.layer, req.dim, req.norm).numpy() for r in runs]
            diverging = True
            lo, mid, hi = _scale(arrays, True)
            label = f"dimension {req.dim}, {where}"
        if req.norm != "none":
            label += f" ({'normalized' if req.norm == 'normalized' else 'normalized, outliers excluded'})"
    return Colouring(values=[_round(a.astype(np.float64)) for a in arrays], lo=lo, mid=mid, hi=hi, label=label,
                     diverging=diverging, fixed=fixed, notes=notes)


def attention_matrix(runtime: Runtime, lm: LoadedModel, run: Run, layer: int, head: int | None, mode: str,
                     pos: int) -> AttentionGrid:
    """The attention window around token ``pos`` (chosen head or mean, and every head), from captured q/k."""
    _check_pos(run, pos)
    _check_layer(layer, lm.info.n_layers)
    spec = model_attn_spec(runtime, lm)
    return _memoized(runtime, run, ("attention-grid", layer, head, mode, pos),
                     lambda: attention_grid(run, spec, layer, head, pos, mode))
