"""Attention rows and columns for the Tokens page, recomputed from captured q and k.

Why recomputed and not the captured pattern: ``attn.hook_pattern`` is [H, T, T] per layer, i.e.
30 x 9 x 1024 x 1024 floats = 1.1 GB for SmolLM2 at 1024 tokens (and 4 GB for Llama-2-7B), while q/k
before and after rotary cost 2 x (H + H_kv) x d_head per token per layer (190 MB for SmolLM2 at 1024
tokens). One row or column costs a [T, d_head] matrix-vector product, so a token/head change is cheap.

RoPE modes (DeepPeek's): ``full`` = the attention weights the model used (softmax of the
rotary-applied scores with the model's own scaling, soft-capping, causal and sliding-window mask;
equals HF's ``output_attentions``); ``applied`` = the pre-softmax scores q_rot . k_rot * scale (RoPE applied);
``not_applied`` = the same scores from the pre-rotary q . k (content only, no position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.capture import Run
from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.sites import arch_for, get_module

ROPE_MODES = ("full", "applied", "not_applied")
ROPE_LABELS = {"full": "full (weights)", "applied": "RoPE applied (scores)", "not_applied": "RoPE not applied (scores)"}
DIRECTIONS = ("from", "to")


@dataclass(frozen=True)
class AttnSpec:
    """What recomputing a head's scores needs beyond q and k."""

    n_heads: int
    n_kv_heads: int
    scaling: float
    causal: bool
    rotary: bool
    softcap: float | None = None
    windows: tuple[int | None, ...] = ()  # sliding-window size per layer (Mistral, Gemma2), None = full

    def kv_head(self, head: int) -> int:
        return head // max(1, self.n_heads // self.n_kv_heads)

    def window(self, layer: int) -> int | None:
        return self.windows[layer] if layer < len(self.windows) else None


def attn_spec(lm: LoadedModel) -> AttnSpec:
    """Scaling and masking of ``lm``'s attention, read from its own modules and config."""
    spec = arch_for(lm.model)
    layers = get_module(lm.model, spec.layers) if spec.family != "bert" else None
    attn = get_module(layers[0], spec.attn) if layers is not None else None
    scaling = getattr(attn, "scaling", None) if attn is not None else None
    if scaling is None:
        scaling = lm.info.d_head ** -0.5
    cfg = lm.model.config
    softcap = getattr(cfg, "attn_logit_softcapping", None)
    window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) is not False else None
    types = getattr(cfg, "layer_types", None)
    windows = tuple(
        window if window and (types is None or types[layer] == "sliding_attention") else None
        for layer in range(lm.info.n_layers)
    )
    return AttnSpec(n_heads=lm.info.n_heads, n_kv_heads=lm.info.n_kv_heads, scaling=float(scaling),
                    causal=lm.info.is_causal, rotary=spec.rotary, softcap=float(softcap) if softcap else None,
                    windows=windows)


def attention_sites(spec: AttnSpec, layer: int) -> list[str]:
    sites = [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_k"]
    if spec.rotary:
        sites += [f"blocks.{layer}.attn.hook_rot_q", f"blocks.{layer}.attn.hook_rot_k"]
    return sites


def _qk(run: Run, spec: AttnSpec, layer: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    if mode not in ROPE_MODES:
        raise InputError(f"Unknown RoPE mode '{mode}': use one of {', '.join(ROPE_MODES)}.")
    rot = spec.rotary and mode != "not_applied"
    q = run.act(f"blocks.{layer}.attn.hook_rot_q" if rot else f"blocks.{layer}.attn.hook_q")
    k = run.act(f"blocks.{layer}.attn.hook_rot_k" if rot else f"blocks.{layer}.attn.hook_k")
    return q.float(), k.float()


def head_scores(run: Run, spec: AttnSpec, layer: int, head: int, mode: str,
                rows: slice | torch.Tensor | None = None) -> torch.Tensor:
    """Pre-softmax scores [R, T] of one head (rows = query positions), masked with -inf."""
    q, k = _qk(run, spec, layer, mode)
    t = q.shape[0]
    rows_idx = torch.arange(t, device=q.device)[rows] if rows is not None else torch.arange(t, device=q.device)
    scores = (q[rows_idx, head] @ k[:, spec.kv_head(head)].T) * spec.scaling
    if spec.softcap and mode == "full":
        scores = torch.tanh(scores / spec.softcap) * spec.softcap
    if spec.causal:
        keys = torch.arange(t, device=q.device)[None, :]
        hidden = keys > rows_idx[:, None]
        window = spec.window(layer)
        if window:
            hidden |= keys <= rows_idx[:, None] - window
        scores = scores.masked_fill(hidden, float("-inf"))
    return scores


def head_values(run: Run, spec: AttnSpec, layer: int, head: int, mode: str,
                rows: slice | torch.Tensor | None = None) -> torch.Tensor:
    """Weights (mode ``full``) or scores of one head for the given query rows; masked = NaN."""
    scores = head_scores(run, spec, layer, head, mode, rows)
    if mode == "full":
        return torch.softmax(scores, dim=-1)
    return scores.masked_fill(torch.isinf(scores), float("nan"))


def attention_values(run: Run, spec: AttnSpec, layer: int, head: int | None, pos: int, mode: str = "full",
                     direction: str = "from") -> torch.Tensor:
    """Per-token values [T]: attention from token ``pos`` to every token (``from``), or from every
    token to ``pos`` (``to``, DeepPeek's opposite attention). ``head=None`` averages the heads.
    Masked positions (future keys, earlier queries) are NaN."""
    if direction not in DIRECTIONS:
        raise InputError(f"Unknown attention direction '{direction}': use 'from' or 'to'.")
    t = run.n_tokens
    if not 0 <= pos < t:
        raise InputError(f"Token {pos} is out of range: this sample has tokens 0..{t - 1}.")
    if head is not None and not 0 <= head < spec.n_heads:
        raise InputError(f"Head {head} is out of range: this model has heads 0..{spec.n_heads - 1}.")
    heads = range(spec.n_heads) if head is None else [head]
    total = None
    for h in heads:
        if direction == "from":
            vals = head_values(run, spec, layer, h, mode, slice(pos, pos + 1))[0]
        else:
            rows = slice(pos, None) if spec.causal else None
            col = head_values(run, spec, layer, h, mode, rows)[:, pos]
            vals = torch.full((t,), float("nan"), device=col.device)
            vals[pos if spec.causal else 0:] = col
        if mode == "full":
            vals = torch.nan_to_num(vals, nan=0.0)
            if spec.causal:
                (vals[pos + 1:] if direction == "from" else vals[:pos]).fill_(float("nan"))
        total = vals if total is None else total + vals
    assert total is not None
    return (total / len(heads)).cpu()


@dataclass
class AttentionGrid:
    """A square window of attention (queries x keys) for one head (or the mean) and for every head.

    ``values[h]`` is the [w, w] matrix of ``heads[h]`` over positions ``start .. start + w - 1`` (rows =
    queries, columns = keys; masked entries NaN); ``mean`` is the mean over heads of the larger ``focus``
    window when no single head is chosen.
    """

    layer: int
    mode: str
    head: int | None  # None = mean of heads
    focus_start: int
    focus: list[list[float | None]]  # [wf, wf] of the chosen head (or the mean)
    grid_start: int
    heads: list[int]
    grid: list[list[list[float | None]]]  # [H, wg, wg]


def _window(pos: int, n_tokens: int, width: int) -> tuple[int, int]:
    """A window of up to ``width`` positions that ends at ``pos`` (or starts at 0 for early tokens)."""
    end = min(n_tokens, max(pos + 1, width))
    return max(0, end - width), end


def _matrix(run: Run, spec: AttnSpec, layer: int, heads: list[int], mode: str, start: int, end: int) -> torch.Tensor:
    """[len(heads), w, w] weights or scores (masked = NaN) over the window (queries and keys)."""
    rows = torch.arange(start, end)
    out = []
    for h in heads:
        vals = head_values(run, spec, layer, h, mode, rows)[:, start:end]
        if mode == "full":
            keys = torch.arange(start, end)[None, :]
            vals = vals.masked_fill(keys > rows[:, None], float("nan")) if spec.causal else vals
        out.append(vals)
    return torch.stack(out)


def _clean(x: torch.Tensor) -> list:
    return [[None if v != v else round(float(v), 5) for v in row] for row in x.tolist()]


def attention_grid(run: Run, spec: AttnSpec, layer: int, head: int | None, pos: int, mode: str = "full",
                   focus_width: int = 128, grid_width: int = 40) -> AttentionGrid:
    """The chosen head's (or the mean's) window and every head's smaller window, both ending at ``pos``."""
    if mode not in ROPE_MODES:
        raise InputError(f"Unknown RoPE mode '{mode}': use one of {', '.join(ROPE_MODES)}.")
    if head is not None and not 0 <= head < spec.n_heads:
        raise InputError(f"Head {head} is out of range: this model has heads 0..{spec.n_heads - 1}.")
    t = run.n_tokens
    fs, fe = _window(pos, t, focus_width)
    chosen = list(range(spec.n_heads)) if head is None else [head]
    focus = _matrix(run, spec, layer, chosen, mode, fs, fe)
    focus = torch.nanmean(focus, dim=0) if head is None else focus[0]
    gs, ge = _window(pos, t, grid_width)
    grid = _matrix(run, spec, layer, list(range(spec.n_heads)), mode, gs, ge)
    return AttentionGrid(layer=layer, mode=mode, head=head, focus_start=fs, focus=_clean(focus), grid_start=gs,
                         heads=list(range(spec.n_heads)), grid=[_clean(g) for g in grid])
