"""Logit lens and tuned lens grids: layers x positions of top tokens and statistics.

One forward per text (the Run cache keeps every block's input, attention output and MLP output);
every view (statistic, window, lens, residual choice) is computed afterwards from those tensors by
tuned-lens's lens modules and the streamed statistics of ``analysis.lens.stats``. Results are
memoised per (text, model, lens, residual, window), so flipping the statistic is a lookup.

Public API (also used by other pages and the JSON API):
``lens_grid(runtime, model_id, text, lens="logit"|"tuned", statistic=..., start=0, width=64,
residual="resid", tuned_source=None) -> LensGrid``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.capture import Run
from analysis.errors import InputError
from analysis.lens.lenses import get_unembed, load_tuned_lens, logit_lens, resolve_lens_source
from analysis.lens.stats import CellStats, pair_divergence, stream_stats
from analysis.models import LoadedModel
from analysis.params import parse_int
from analysis.runtime import Runtime

STATISTICS: dict[str, str] = {
    "max_prob": "Top-token probability",
    "entropy": "Entropy (nats)",
    "kl_final": "KL to final output (nats)",
    "rank": "Rank of the true next token",
    "logprob": "Log-prob of the true next token",
    "cross_entropy": "Cross-entropy (nats)",
}
RESIDUALS: dict[str, str] = {
    "resid": "Residual stream (block input = previous block's output)",
    "attn": "Attention output, decoded through the lens",
    "mlp": "MLP output, decoded through the lens",
}
LENSES = ("logit", "tuned")
DIVERGENCES = {"js": "JS divergence (nats)", "kl": "KL(tuned || logit) (nats)"}
TOP_K = 10
MAX_WIDTH = 256


def lens_sites(n_layers: int) -> list[str]:
    """The sites one lens run captures: every block's input, attention and MLP output."""
    sites = []
    for layer in range(n_layers):
        sites += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_attn_out", f"blocks.{layer}.hook_mlp_out"]
    return sites


def _site(residual: str, layer: int) -> str:
    return {
        "resid": f"blocks.{layer}.hook_resid_pre",
        "attn": f"blocks.{layer}.hook_attn_out",
        "mlp": f"blocks.{layer}.hook_mlp_out",
    }[residual]


def layer_labels(n_layers: int, residual: str) -> list[str]:
    """Row labels bottom-up: the embedding, each block's stream, then the model's output."""
    if residual == "resid":
        return ["embed"] + [f"L{i}" for i in range(1, n_layers)] + ["output"]
    prefix = "attn" if residual == "attn" else "mlp"
    return [f"{prefix} {i}" for i in range(n_layers)] + ["output"]


@dataclass
class LensGrid:
    """One lens over a window of a text: rows = layer labels (bottom = embedding), columns = positions.

    ``stats[name]`` is [rows, width]; ``top_tokens[r][t]`` the top-1 token string; ``top_k_tokens``
    / ``top_k_probs`` the top-10 per cell; ``next_tokens[t]`` the true next token ("" at the end).
    """

    model_id: str
    lens: str
    residual: str
    statistic: str
    start: int
    tokens: list[str]
    next_tokens: list[str]
    layer_labels: list[str]
    top_tokens: list[list[str]]
    top_k_tokens: list[list[list[str]]]
    top_k_probs: np.ndarray
    stats: dict[str, np.ndarray]
    n_tokens: int
    lens_source: str = ""
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def summary(self) -> dict[str, list[float]]:
        """Per-layer means over the window: KL to final and cross-entropy (NaN-aware)."""
        out = {}
        for name in ("kl_final", "cross_entropy", "entropy", "max_prob"):
            arr = self.stats[name]
            out[name] = [float(np.nanmean(row)) if np.isfinite(row).any() else float("nan") for row in arr]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (NaN -> None)."""

        def clean(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        return {
            "model_id": self.model_id, "lens": self.lens, "residual": self.residual,
            "statistic": self.statistic, "start": self.start, "n_tokens": self.n_tokens,
            "tokens": self.tokens, "next_tokens": self.next_tokens, "layer_labels": self.layer_labels,
            "top_tokens": self.top_tokens, "values": clean(self.values),
            "stats": {k: clean(v) for k, v in self.stats.items()},
        }


def check_window(n_tokens: int, start: Any, width: Any) -> tuple[int, int]:
    """The window [start, end) within the text; bad values give a message naming the bound (the end is cut
    at the text's end: a window wider than what is left shows what is left)."""
    width = parse_int(width, "Window width", 1, MAX_WIDTH, field="lens-width")
    start = parse_int(start, "Window start", 0, max(0, n_tokens - 1), field="lens-start")
    return start, min(n_tokens, start + width)


def row_producers(
    lm: LoadedModel, acts: dict[str, torch.Tensor], lens: Any, residual: str, start: int, end: int
) -> list[Callable[[], torch.Tensor]]:
    """One callable per layer giving the lens-transformed, final-normed hidden states of the window."""
    if residual not in RESIDUALS:
        raise InputError(f"Unknown residual choice '{residual}' (choose from {', '.join(RESIDUALS)}).")
    norm = lens.unembed.final_norm

    def make(layer: int) -> Callable[[], torch.Tensor]:
        def produce() -> torch.Tensor:
            h = acts[_site(residual, layer)][start:end]
            with torch.inference_mode():
                h = h.to(next(lens.unembed.parameters()).dtype)
                return norm(lens.transform_hidden(h, layer)).float()

        return produce

    return [make(layer) for layer in range(lm.info.n_layers)]


def targets_for(token_ids: list[int], start: int, end: int) -> list[int]:
    """The true next token id for each window position (-1 after the last token)."""
    return [token_ids[t + 1] if t + 1 < len(token_ids) else -1 for t in range(start, end)]


def compute_stats(lm: LoadedModel, run: Run, lens: Any, residual: str, start: int, end: int) -> CellStats:
    """Streamed statistics of one lens over positions [start, end) of a run (all layers + output row)."""
    unembed = lens.unembed.unembedding
    rows = row_producers(lm, run.acts, lens, residual, start, end)
    return stream_stats(
        rows, unembed.weight, unembed.bias, run.logits[start:end], targets_for(run.token_ids, start, end), k=TOP_K
    )


def _stats_memo(runtime: Runtime) -> Any:
    """Computed CellStats / divergences per (model, run, lens, window): views are cheap to rebuild from them."""
    return runtime.memo("lens-stats", 32)


def get_lens(runtime: Runtime, lm: LoadedModel, lens: str, tuned_source: str | None = None,
             field: str | None = None) -> tuple[Any, str, float]:
    """(lens module, source label, version stamp) for ``logit`` or ``tuned``."""
    if lens == "logit":
        return logit_lens(runtime, lm), "logit", 0.0
    if lens == "tuned":
        source = resolve_lens_source(runtime.settings, lm.info.model_id, tuned_source, field=field)
        params = Path(source) / "params.pt"
        return load_tuned_lens(runtime, lm, source), source, params.stat().st_mtime if params.exists() else 0.0
    raise InputError(f"Unknown lens '{lens}' (choose logit or tuned).")


def lens_run(runtime: Runtime, model_id: str, text: str, edits: Sequence[Any] = ()) -> tuple[LoadedModel, Run]:
    """The cached run with every site the lens needs (one forward per text and edit list)."""
    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise InputError(f"The lens needs a causal language model; {model_id} is an encoder.")
    run = runtime.run(model_id, text, lens_sites(lm.info.n_layers), edits=edits)
    return lm, run


def _decode(lm: LoadedModel, ids: np.ndarray) -> list:
    """Top-k ids [R, T, k] as token strings (the model's one decoder)."""
    flat = lm.decode(ids.reshape(-1).tolist())
    return np.array(flat, dtype=object).reshape(ids.shape).tolist()


def lens_grid(
    runtime: Runtime,
    model_id: str,
    text: str,
    lens: str = "logit",
    statistic: str = "kl_final",
    start: int = 0,
    width: int = 64,
    residual: str = "resid",
    tuned_source: str | None = None,
    tuned_field: str | None = None,
    edits: Sequence[Any] = (),
) -> LensGrid:
    """The lens grid for a window of ``text`` (see module docstring). Never re-runs a cached text.
    ``tuned_field`` names the form field a bad ``tuned_source`` is reported on; ``edits`` (resolved
    :mod:`analysis.edits` records) give the grid of the edited model."""
    if statistic not in STATISTICS:
        raise InputError(f"Unknown statistic '{statistic}' (choose from {', '.join(STATISTICS)}).")
    lm, run = lens_run(runtime, model_id, text, edits)
    start, end = check_window(run.n_tokens, start, width)
    lens_obj, source, stamp = get_lens(runtime, lm, lens, tuned_source, field=tuned_field)
    key = (model_id, run.key, lens, source, stamp, residual, start, end)
    stats = _stats_memo(runtime).get_or_compute(key, lambda: compute_stats(lm, run, lens_obj, residual, start, end))
    top_strings = _decode(lm, stats.top_ids)
    all_stats = {name: stats.get(name) for name in STATISTICS}
    next_tokens = [run.tokens[t + 1] if t + 1 < run.n_tokens else "" for t in range(start, end)]
    return LensGrid(
        model_id=model_id, lens=lens, residual=residual, statistic=statistic, start=start,
        tokens=run.tokens[start:end], next_tokens=next_tokens,
        layer_labels=layer_labels(lm.info.n_layers, residual),
        top_tokens=[[cell[0] for cell in row] for row in top_strings], top_k_tokens=top_strings,
        top_k_probs=stats.top_probs, stats=all_stats, n_tokens=run.n_tokens, lens_source=source,
        values=all_stats[statistic],
    )


def lens_difference(
    runtime: Runtime,
    model_id: str,
    text: str,
    kind: str = "js",
    start: int = 0,
    width: int = 64,
    residual: str = "resid",
    tuned_source: str | None = None,
) -> np.ndarray:
    """[layers + 1, window] divergence between the tuned and the logit lens (output row = 0)."""
    if kind not in DIVERGENCES:
        raise InputError(f"Unknown divergence '{kind}' (choose from {', '.join(DIVERGENCES)}).")
    lm, run = lens_run(runtime, model_id, text)
    start, end = check_window(run.n_tokens, start, width)
    tuned, source, stamp = get_lens(runtime, lm, "tuned", tuned_source)
    logit = logit_lens(runtime, lm)
    key = (model_id, run.key, "diff", kind, source, stamp, residual, start, end)

    def compute() -> np.ndarray:
        unembed = get_unembed(runtime, lm).unembedding
        rows_t = row_producers(lm, run.acts, tuned, residual, start, end)
        rows_l = row_producers(lm, run.acts, logit, residual, start, end)
        div = pair_divergence(rows_t, rows_l, unembed.weight, unembed.bias, kind=kind)
        return np.vstack([div, np.zeros((1, end - start))])

    return _stats_memo(runtime).get_or_compute(key, compute)


def lens_edit_shift(
    runtime: Runtime,
    model_id: str,
    text: str,
    edits: Sequence[Any],
    lens: str = "logit",
    start: int = 0,
    width: int = 64,
    residual: str = "resid",
    tuned_source: str | None = None,
) -> np.ndarray:
    """[layers + 1, window] KL(clean ‖ edited) per cell: the same lens read on the clean and the edited run;
    the output row compares the two runs' own next-token distributions."""
    if not edits:
        raise InputError("The edit-effect view needs an edit list: open Edits above and type one.")
    lm, clean = lens_run(runtime, model_id, text)
    _, edited = lens_run(runtime, model_id, text, edits)
    start, end = check_window(clean.n_tokens, start, width)
    lens_obj, source, stamp = get_lens(runtime, lm, lens, tuned_source)
    key = (model_id, clean.key, "edit-shift", edited.key, lens, source, stamp, residual, start, end)

    def compute() -> np.ndarray:
        unembed = get_unembed(runtime, lm).unembedding
        rows_c = row_producers(lm, clean.acts, lens_obj, residual, start, end)
        rows_e = row_producers(lm, edited.acts, lens_obj, residual, start, end)
        layers = pair_divergence(rows_c, rows_e, unembed.weight, unembed.bias, kind="kl")
        logp = torch.log_softmax(clean.logits[start:end].float(), -1)
        logq = torch.log_softmax(edited.logits[start:end].float(), -1)
        final = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0).double().numpy()
        return np.vstack([layers, final[None]])

    return _stats_memo(runtime).get_or_compute(key, compute)
