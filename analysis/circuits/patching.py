"""Activation patching (causal tracing): restore one clean activation in a corrupted run, read the effect.

The corrupted run is a second prompt of the same token count, or ROME's corruption (Meng et al. 2022):
Gaussian noise of 3 x the embedding's standard deviation added to the token embeddings of chosen
positions (seeded, so a grid is reproducible). For every (layer, position) cell the clean value of one site
(the block's input stream ``resid``, the attention output ``attn`` or the MLP output ``mlp``) replaces the
corrupted one, and the metric at the last position is read: the target's probability, or the logit
difference target - contrast.

Many patches per forward, and only the work a patch can change: one pass of the corrupted prompt keeps
every block's input stream and every layer's keys and values (``CorruptedRun``). The cells of one layer go
in batches of nearby positions (batch index = patched position). A batch starts at its layer, from the
corrupted block input widened to the batch (the blocks below are the corrupted run's: they do not run
again), and at its first patched position p: a patch at p cannot change the positions before it (causal
attention), so those enter as the corrupted run's own keys and values, exactly what recomputing them would
give. Attention is fused (SDPA) and only the last position is read out through the head. The clean run
comes from the run cache. ``patch_layer`` without a ``CorruptedRun`` runs the plain full pass (the
reference the resumed batches are tested against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.capture import capture
from analysis.circuits.attribution import single_token
from analysis.circuits.decompose import require_causal, softcap
from analysis.errors import InputError
from analysis.jobs import Job, quiet_job
from analysis.models import LoadedModel
from analysis.params import parse_choice, parse_int, parse_ranges
from analysis.readout import input_embedding
from analysis.runtime import Runtime

PATCH_SITES = {"resid": "hook_resid_pre", "attn": "hook_attn_out", "mlp": "hook_mlp_out"}
PATCH_SITE_LABELS = {"resid": "residual stream (block input)", "attn": "attention output", "mlp": "MLP output"}
NOISE_SCALE = 3.0  # ROME: 3 x the embedding standard deviation
MAX_CELLS = 16384  # layers x positions of one grid (30 layers x 512 positions fit)
BATCH_TOKENS = 8192  # tokens per batched forward (batch x prompt length)
MIN_BATCHES = 4  # batches per layer at least (see ``batches``)


@dataclass(frozen=True)
class Corruption:
    """A second prompt (``text``) or ROME noise on ``positions`` (std ``NOISE_SCALE`` x the embedding std)."""

    text: str | None = None
    positions: tuple[int, ...] = ()
    seed: int = 0

    @property
    def label(self) -> str:
        if self.text is not None:
            return "corrupted prompt"
        return f"noise {NOISE_SCALE:g}σ on positions {', '.join(map(str, self.positions))} (seed {self.seed})"


@dataclass
class CorruptedRun:
    """What a batch reuses of the corrupted pass: every layer's keys and values ([1, kv_heads, T, d_head])
    for the positions before its first patch, and every block's input stream ([1, T, d]) where it starts."""

    keys: list[tuple[torch.Tensor, torch.Tensor]]
    streams: list[torch.Tensor]

    @classmethod
    def of(cls, lm: LoadedModel, ids: list[int], corruption: Corruption) -> tuple[CorruptedRun, torch.Tensor]:
        """(the corrupted run, its final normed stream at the last position): one forward."""
        sites = [f"blocks.{layer}.hook_resid_pre" for layer in range(lm.info.n_layers)]
        result = capture(lm, torch.tensor([ids]), [*sites, "ln_final.hook_normalized"], logits=False,
                         edits=_noise_edit(lm, corruption), fused_attention=True, keep_cache=True)
        keys = [(layer.keys, layer.values) for layer in result.cache.layers]
        return cls(keys, [result.acts[site] for site in sites]), result.acts["ln_final.hook_normalized"][:, -1]

    def prefix(self, start: int, batch: int) -> Any:
        """A cache of the positions before ``start``, widened to ``batch``."""
        from transformers import DynamicCache

        data = [(k[:, :, :start].expand(batch, -1, -1, -1), v[:, :, :start].expand(batch, -1, -1, -1))
                for k, v in self.keys]
        return DynamicCache(ddp_cache_data=data)


def batches(positions: list[int], per_batch: int, min_batches: int = MIN_BATCHES) -> list[list[int]]:
    """Column indices of ``positions`` in batches of nearby positions (sorted), at most ``per_batch`` each and
    at least ``min_batches`` of them: a batch computes every position from its first patch on, so more,
    tighter batches compute fewer positions (4 batches: ~5/8 of one batch's, against ~1/2 for one per cell)."""
    order = sorted(range(len(positions)), key=positions.__getitem__)
    count = max(-(-len(order) // per_batch), min(len(order), min_batches))
    bounds = [len(order) * i // count for i in range(count + 1)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class PatchingGrid:
    """values[l, i] = the metric with the clean ``site`` restored at (layer l, positions[i])."""

    model_id: str
    tokens: list[str]
    corrupted_tokens: list[str]
    site: str
    metric: str  # "prob" | "logit_diff"
    target_label: str
    corruption: str
    positions: list[int]
    values: np.ndarray  # [L, len(positions)]
    clean_value: float
    corrupted_value: float
    forwards: int  # batched forwards the grid took

    @property
    def recovered(self) -> np.ndarray:
        """(patched - corrupted) / (clean - corrupted): 1 = the patch restores the clean behaviour."""
        gap = self.clean_value - self.corrupted_value
        return (self.values - self.corrupted_value) / gap if abs(gap) > 1e-12 else np.full_like(self.values, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "tokens": self.tokens, "corrupted_tokens": self.corrupted_tokens,
                "site": self.site, "metric": self.metric, "target": self.target_label, "corruption": self.corruption,
                "positions": self.positions, "values": self.values.tolist(), "clean_value": self.clean_value,
                "corrupted_value": self.corrupted_value, "recovered": np.nan_to_num(self.recovered, nan=0.0).tolist(),
                "forwards": self.forwards}


def noise(lm: LoadedModel, positions: tuple[int, ...], seed: int) -> torch.Tensor:
    """ROME's noise for ``positions``: [len, d] ~ N(0, (3 * std(W_E))^2), from ``seed``."""
    std = float(input_embedding(lm).std())
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(positions), lm.info.d_model, generator=generator) * (NOISE_SCALE * std)


def _noise_edit(lm: LoadedModel, corruption: Corruption) -> dict:
    """The embedding edit of ROME's noise (none for a corrupted prompt)."""
    if corruption.text is not None:
        return {}
    index = torch.tensor(corruption.positions, dtype=torch.long)
    delta = noise(lm, corruption.positions, corruption.seed)

    def add(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, index] += delta.to(x.device, x.dtype)
        return x

    return {"hook_embed": add}


def metric_values(lm: LoadedModel, logits: torch.Tensor, target: int, contrast: int | None) -> torch.Tensor:
    """[B] probability of ``target`` (or logit difference to ``contrast``) from last-position logits [B, V]."""
    logits = logits.float()
    if contrast is not None:
        return logits[:, target] - logits[:, contrast]
    return logits.softmax(-1)[:, target]


def _last_logits(lm: LoadedModel, normed_last: torch.Tensor) -> torch.Tensor:
    """The head on the final normed stream of the last position (plus Gemma 2's soft-cap)."""
    head = lm.model.get_output_embeddings()
    with torch.inference_mode():
        logits = head(normed_last.to(head.weight.dtype)).float()
    cap = softcap(lm)
    return cap * torch.tanh(logits / cap) if cap is not None else logits


def check_request(runtime: Runtime, model_id: str, clean_text: str, corrupted_text: str | None, noise_positions: Any,
                  seed: Any = 0, positions: Any = None) -> tuple[Corruption, list[int], int]:
    """(corruption, patched positions, token count) of a patching request, checked from token counts alone
    (no forward): the page checks before it starts the job, the grid before it runs."""
    n_tokens = len(runtime.tokens(model_id, clean_text))
    seed_i = parse_int(seed, "Noise seed", 0, 2**31 - 1, default=0, field="circuits-seed")
    wanted = parse_ranges(positions, "Positions", 0, n_tokens - 1, field="circuits-positions")
    if corrupted_text not in (None, ""):
        corrupted = runtime.check_text(corrupted_text, field="circuits-corrupted")
        n_corrupted = len(runtime.tokens(model_id, corrupted))
        if n_corrupted != n_tokens:
            raise InputError(f"The corrupted prompt has {n_corrupted} tokens and the clean one {n_tokens}: patching "
                             "needs the same token count (edit one of them).", field="circuits-corrupted")
        corruption = Corruption(text=corrupted)
    else:
        noisy = parse_ranges(noise_positions, "Noise positions", 0, n_tokens - 1, field="circuits-noise-positions")
        if not noisy:
            raise InputError("Give a corrupted prompt, or the positions to corrupt with noise (e.g. 1-3).",
                             field="circuits-noise-positions")
        corruption = Corruption(positions=tuple(noisy), seed=seed_i)
    cells_at = list(range(n_tokens)) if wanted is None else wanted
    n_layers = runtime.model(model_id).info.n_layers
    if n_layers * len(cells_at) > MAX_CELLS:
        raise InputError(f"The grid would have {n_layers} layers x {len(cells_at)} positions = "
                         f"{n_layers * len(cells_at):,} cells; the limit is {MAX_CELLS:,}: choose fewer positions.",
                         field="circuits-positions")
    return corruption, cells_at, n_tokens


def patch_layer(lm: LoadedModel, corrupted_ids: list[int], corruption: Corruption, site: str, layer: int,
                positions: list[int], clean_values: torch.Tensor,
                corrupted: CorruptedRun | None = None) -> torch.Tensor:
    """Last-position logits [len(positions), V] with the clean ``site`` value restored at (layer, each position),
    one batched forward. Without ``corrupted`` the corrupted prompt runs from its embedding and is widened to
    the batch at ``layer``'s input; with it the pass starts at ``layer`` from the corrupted block input and at
    the first patched position, the earlier positions given as the corrupted run's keys and values."""
    batch = len(positions)
    start = min(positions) if corrupted is not None else 0
    rows = torch.arange(batch)
    at = torch.tensor(positions, dtype=torch.long)
    patch = clean_values[at]  # [B, d]
    index = at - start  # positions within the pass

    def restore(x: torch.Tensor) -> torch.Tensor:
        x = x.clone() if x.shape[0] == batch else x.expand(batch, *x.shape[1:]).clone()
        x[rows, index] = patch.to(x.device, x.dtype)
        return x

    def widen(x: torch.Tensor) -> torch.Tensor:
        return x.expand(batch, *x.shape[1:]).clone()

    at_input = f"blocks.{layer}.hook_resid_pre"
    edits = {at_input: restore} if site == "resid" else {at_input: widen, f"blocks.{layer}.{PATCH_SITES[site]}": restore}
    if corrupted is None:
        result = capture(lm, torch.tensor([corrupted_ids]), ["ln_final.hook_normalized"], logits=False,
                         edits=_noise_edit(lm, corruption) | edits, fused_attention=True)
    else:
        past = corrupted.prefix(start, batch) if start > 0 else None
        result = capture(lm, torch.tensor([corrupted_ids[start:]]), ["ln_final.hook_normalized"], logits=False,
                         edits=edits, fused_attention=True, past=past,
                         resume=(layer, corrupted.streams[layer][:, start:]))
    return _last_logits(lm, result.acts["ln_final.hook_normalized"][:, -1])


def patching_grid(runtime: Runtime, model_id: str, clean_text: str, corrupted_text: str | None = None, *,
                  noise_positions: Any = None, seed: Any = 0, site: Any = "resid", target: str = "top",
                  contrast: str | None = None, positions: Any = None, job: Job | None = None) -> PatchingGrid:
    """The patching grid of ``site`` over every layer x ``positions`` (default all) of the clean prompt."""
    job = job or quiet_job()
    lm = runtime.model(model_id)
    require_causal(lm)
    site = parse_choice(site, "Patched site", PATCH_SITES, field="circuits-patch-site")
    n_layers = lm.info.n_layers
    sites = [f"blocks.{layer}.{PATCH_SITES[site]}" for layer in range(n_layers)]
    corruption, cells_at, _n_tokens = check_request(runtime, model_id, clean_text, corrupted_text, noise_positions,
                                                    seed, positions)
    clean = runtime.run(model_id, clean_text, sites)
    # the corrupted prompt's ids only: its one forward is CorruptedRun's, which keeps what the batches reuse
    corrupted_ids = list(runtime.tokens(model_id, corruption.text)) if corruption.text is not None \
        else list(clean.token_ids)
    corrupted_tokens = lm.decode(corrupted_ids)
    corrupted, corrupted_normed = CorruptedRun.of(lm, corrupted_ids, corruption)
    corrupted_last = _last_logits(lm, corrupted_normed)
    target_id = int(torch.argmax(clean.logits[-1])) if target in (None, "", "top") else \
        single_token(lm, target, "The target token", "circuits-target")
    contrast_id = None if contrast in (None, "") else single_token(lm, contrast, "The contrast token",
                                                                 "circuits-contrast")
    clean_value = float(metric_values(lm, clean.logits[-1:], target_id, contrast_id)[0])
    corrupted_value = float(metric_values(lm, corrupted_last, target_id, contrast_id)[0])
    per_batch = max(1, min(len(cells_at), BATCH_TOKENS // clean.n_tokens))
    values = np.zeros((n_layers, len(cells_at)))
    forwards = 1
    job.phase(f"patching {n_layers} layers x {len(cells_at)} positions", total=n_layers * len(cells_at), unit="cells")
    for layer in range(n_layers):
        clean_values = clean.act(sites[layer]).float()
        for columns in batches(cells_at, per_batch):
            job.check()
            chunk = [cells_at[i] for i in columns]
            logits = patch_layer(lm, corrupted_ids, corruption, site, layer, chunk, clean_values, corrupted)
            values[layer, columns] = metric_values(lm, logits, target_id, contrast_id).cpu().numpy()
            forwards += 1
            job.advance(len(chunk))
    shown = lm.decode([target_id])[0]
    label = f"p({shown!r})" if contrast_id is None else f"logit {shown!r} − {lm.decode([contrast_id])[0]!r}"
    return PatchingGrid(lm.model_id, list(clean.tokens), list(corrupted_tokens), site,
                        "prob" if contrast_id is None else "logit_diff", label, corruption.label, cells_at, values,
                        clean_value, corrupted_value, forwards)


def noise_scale(lm: LoadedModel) -> float:
    """The noise's standard deviation for this model (3 x the embedding std), shown beside the control."""
    return NOISE_SCALE * float(input_embedding(lm).std())

