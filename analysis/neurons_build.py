"""Neuron index build: one streaming scan of a corpus -> top-k snippets, quantiles, top tokens per unit.

A *unit* is one MLP neuron (site ``blocks.{l}.mlp.hook_post``) or one feature of an sae-lens SAE.
Everything is reduced on the model's device while the corpus streams through in batches:

- top-k rows per unit by the row's max activation (``torch.topk`` merge of the running top-k with the
  batch), with the activations of a token window around the max;
- the ``top_tokens_k`` highest-activating token positions per unit (which tokens carry the max);
- a fixed-edge histogram per unit (asinh-spaced bins; quantiles are read from it);
- the activations on a fixed, strided sample of tokens (for cosine similarity between units).

Hand-written because no library keeps streaming per-neuron top-k/histograms for HF models (sae-lens'
dashboards and Neuroscope are built offline from TransformerLens caches). The state is checkpointed
with the number of processed batches, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from analysis.capture import capture, pad_right
from analysis.errors import InputError
from analysis.models import LoadedModel

N_BINS = 512
BIN_SCALE = 0.01  # asinh bins: ~linear within +-0.01, ~5% relative width beyond
BIN_RANGE = 1e4
QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0)
MAX_INDEX_TOKENS = 50_000_000


@dataclass
class IndexConfig:
    """What to scan and what to keep; the index id is a hash of these (batch_size excluded)."""

    model_id: str
    corpus: str = "training"  # "training" | a sample source (prose, code, ...) | path to a .txt/.jsonl file
    n_tokens: int = 20_000
    seq_len: int = 64
    top_k: int = 20
    before: int = 16  # tokens kept before the max
    after: int = 4  # and after it
    top_tokens_k: int = 64  # rows whose max-carrying token counts for "top tokens"
    stat_every: int = 8  # histogram/mean/density from every n-th token (max, min and top-k see every token)
    sample_tokens: int = 1024
    sae: str | None = None
    layers: list[int] | None = None  # None = every layer
    batch_size: int = field(default=16, compare=False)

    def check(self, n_layers: int) -> None:
        bounds = [("n_tokens", self.n_tokens, 16, MAX_INDEX_TOKENS), ("seq_len", self.seq_len, 8, 4096),
                  ("top_k", self.top_k, 1, 1000), ("before", self.before, 0, 512), ("after", self.after, 0, 512),
                  ("top_tokens_k", self.top_tokens_k, 1, 4096), ("stat_every", self.stat_every, 1, 1024), ("sample_tokens", self.sample_tokens, 16, 65536),
                  ("batch_size", self.batch_size, 1, 4096)]
        for name, value, low, high in bounds:
            if not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name} must be an integer in [{low}, {high}], got {value!r}.")
        for layer in self.layers or []:
            if not 0 <= layer < n_layers:
                raise InputError(f"Layer {layer} is out of range: the model has layers 0..{n_layers - 1}.")

    def key_parts(self) -> dict[str, Any]:
        parts = asdict(self)
        parts.pop("batch_size")
        return parts


@dataclass
class Group:
    """A set of units read at one site: an MLP layer or an SAE."""

    name: str  # "mlp{l}" or "sae"
    kind: str  # "mlp" | "sae"
    site: str
    width: int
    layer: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildProgress:
    """One progress report: batches done of total, throughput, ETA."""

    done: int
    total: int
    tokens: int
    tokens_per_s: float
    eta_s: float | None
    status: str = "running"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def mlp_group(layer: int, width: int) -> Group:
    return Group(name=f"mlp{layer}", kind="mlp", site=f"blocks.{layer}.mlp.hook_post", width=width, layer=layer)


def hist_edges(device: torch.device | str = "cpu") -> torch.Tensor:
    """The N_BINS+1 fixed bin edges shared by every unit (asinh spacing, symmetric around 0)."""
    top = math.asinh(BIN_RANGE / BIN_SCALE)
    return torch.sinh(torch.linspace(-top, top, N_BINS + 1, dtype=torch.float64)).mul(BIN_SCALE).float().to(device)


def quantiles_from_hist(counts: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                        qs: tuple[float, ...] = QUANTILES) -> torch.Tensor:
    """Quantiles [units, len(qs)] from histogram counts [units, N_BINS+2] (under/overflow bins at the
    ends), interpolating linearly inside a bin; clamped to the exact observed min/max."""
    edges = hist_edges(counts.device).double()
    counts = counts.double()
    total = counts.sum(1, keepdim=True).clamp_min(1)
    cdf = counts.cumsum(1) / total  # [U, NB+2]
    out = []
    lower = torch.cat([torch.full((1,), -BIN_RANGE * 10, dtype=torch.float64, device=counts.device), edges])
    upper = torch.cat([edges, torch.full((1,), BIN_RANGE * 10, dtype=torch.float64, device=counts.device)])
    for q in qs:
        target = torch.full((counts.shape[0], 1), q, dtype=torch.float64, device=counts.device)
        b = torch.searchsorted(cdf.contiguous(), target).clamp(max=counts.shape[1] - 1).squeeze(1)
        prev = torch.where(b > 0, cdf.gather(1, (b - 1).clamp_min(0)[:, None]).squeeze(1), torch.zeros_like(b, dtype=torch.float64))
        inside = (q - prev) / (cdf.gather(1, b[:, None]).squeeze(1) - prev).clamp_min(1e-12)
        value = lower[b] + inside.clamp(0, 1) * (upper[b] - lower[b])
        value = torch.minimum(torch.maximum(value, lo.double()), hi.double())
        if q <= 0.0 or q >= 1.0:  # the extremes are exact (every token is seen for min and max)
            value = (lo if q <= 0.0 else hi).double().clone()
        out.append(value)
    return torch.stack(out, 1).float()


class GroupState:
    """Running reductions for one group on the device (see module docstring)."""

    def __init__(self, width: int, cfg: IndexConfig, device: torch.device) -> None:
        k, m, w = cfg.top_k, cfg.top_tokens_k, cfg.before + cfg.after + 1
        self.cfg = cfg
        self.top_vals = torch.full((k, width), -math.inf, device=device)
        self.top_row = torch.full((k, width), -1, dtype=torch.long, device=device)
        self.top_pos = torch.zeros((k, width), dtype=torch.long, device=device)
        self.top_win = torch.full((k, w, width), math.nan, device=device)  # [rank, window, unit]
        self.tok_vals = torch.full((m, width), -math.inf, device=device)
        self.tok_ids = torch.full((m, width), -1, dtype=torch.long, device=device)
        self.counts = torch.zeros((width, N_BINS + 2), dtype=torch.int64, device=device)
        self.total = torch.zeros(width, dtype=torch.float64, device=device)
        self.n_pos = torch.zeros(width, dtype=torch.int64, device=device)
        self.lo = torch.full((width,), math.inf, device=device)
        self.sample = torch.zeros((cfg.sample_tokens, width), dtype=torch.float16, device=device)
        self.n_tokens = 0  # tokens in the histogram
        self.edges = hist_edges(device)
        self.offsets = torch.arange(-cfg.before, cfg.after + 1, device=device)
        self.bin_offsets = torch.arange(width, device=device) * (N_BINS + 2)

    def update(self, acts: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor, row_ids: torch.Tensor,
               sample_at: torch.Tensor, sample_slots: torch.Tensor) -> None:
        """Fold one batch in: ``acts`` [B, T, U] float, ``ids``/``valid`` [B, T], ``row_ids`` [B]."""
        a = acts.float()
        b, t, u = a.shape
        all_valid = bool(valid.all())
        masked = a if all_valid else a.masked_fill(~valid[..., None], -math.inf)
        # 1. top-k rows by their max, with the activation window around the max
        row_max, row_pos = masked.max(dim=1)  # [B, U]
        k = self.top_vals.shape[0]
        vals, sel = torch.topk(torch.cat([self.top_vals, row_max]), k, dim=0)  # [K, U]
        is_new = sel >= k
        old = sel.clamp(max=k - 1)
        from_batch = (sel - k).clamp(min=0)
        rows = torch.where(is_new, row_ids[from_batch], self.top_row.gather(0, old))
        pos = torch.where(is_new, row_pos.gather(0, from_batch), self.top_pos.gather(0, old))
        # windows [B, W, U] around every row's max: one gather along T on a NaN-padded copy (U contiguous)
        w = self.offsets.shape[0]
        padded = torch.full((b, t + w - 1, u), math.nan, device=a.device)
        padded[:, self.cfg.before : self.cfg.before + t] = a if all_valid else a.masked_fill(~valid[..., None], math.nan)
        batch_win = padded.gather(1, row_pos[:, None, :] + torch.arange(w, device=a.device)[None, :, None])
        index = (k, w, u)
        wins = torch.where(is_new[:, None, :], batch_win.gather(0, from_batch[:, None, :].expand(index)),
                           self.top_win.gather(0, old[:, None, :].expand(index)))
        self.top_vals, self.top_row, self.top_pos, self.top_win = vals, rows, pos, wins
        # 2. which token carries the max of each row: kept for the top_tokens_k rows with the highest max
        row_tok = ids.gather(1, row_pos)  # [B, U]
        mm = self.tok_vals.shape[0]
        tv, ti = torch.topk(torch.cat([self.tok_vals, row_max]), mm, dim=0)
        self.tok_ids = torch.cat([self.tok_ids, row_tok]).gather(0, ti)
        self.tok_vals = tv
        # 3. exact min; histogram, sum and positive count on every stat_every-th valid token
        self.lo = torch.minimum(self.lo, (a if all_valid else a.masked_fill(~valid[..., None], math.inf)).amin(1).amin(0))
        good = (a.reshape(b * t, u) if all_valid else a[valid])[:: self.cfg.stat_every].contiguous()
        if good.numel():
            bins = torch.bucketize(good, self.edges)  # 0..N_BINS+1 (under/overflow at the ends)
            bins += self.bin_offsets
            flat_bins = bins.reshape(-1)
            self.counts.view(-1).index_add_(0, flat_bins, torch.ones_like(flat_bins))
            self.total += good.sum(0).double()
            self.n_pos += (good > 0).sum(0)
            self.n_tokens += good.shape[0]
        # 4. the similarity sample
        if sample_at.numel():
            self.sample[sample_slots] = a.reshape(b * t, u)[sample_at].half()

    def state(self) -> dict[str, Any]:
        names = ("top_vals", "top_row", "top_pos", "top_win", "tok_vals", "tok_ids", "counts", "total", "n_pos",
                 "lo", "sample")
        out = {n: getattr(self, n).cpu() for n in names}
        out["n_tokens"] = self.n_tokens
        return out

    def load(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(self.top_vals.device))
        self.n_tokens = int(state["n_tokens"])


def make_batches(rows: list[list[int]], batch_size: int, pad_id: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(row_ids [B], input_ids [B, T], attention_mask [B, T]) per batch, right-padded to the batch's longest row."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = pad_right(chunk, pad_id)
        out.append((torch.arange(start, start + len(chunk)), ids, mask))
    return out


class Scanner:
    """Streams batches through the model and folds every group's activations into its state."""

    def __init__(self, lm: LoadedModel, cfg: IndexConfig, groups: list[Group], n_rows_tokens: int,
                 sae: Any | None = None) -> None:
        self.lm, self.cfg, self.groups, self.sae = lm, cfg, groups, sae
        self.states = {g.name: GroupState(g.width, cfg, lm.device) for g in groups}
        self.stride = max(1, n_rows_tokens // cfg.sample_tokens)
        self.seen_sample_tokens = 0  # tokens eligible for the sample seen so far
        self.n_sampled = 0
        self.sites = sorted({g.site for g in groups})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The activations of every group for one batch ([B, T, width])."""
        cap = capture(self.lm, ids, self.sites, attention_mask=mask, logits=False, stop_early=True)
        out = {}
        for g in self.groups:
            x = cap.acts[g.site]
            out[g.name] = self.sae.encode(x).to(x.device) if g.kind == "sae" else x
        return out

    def step(self, row_ids: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> None:
        dev = self.lm.device
        acts = self.forward(ids, mask)
        ids_d, valid = ids.to(dev), mask.to(dev).bool()
        eligible = valid.clone()
        eligible[:, 0] = False  # the first token is an attention sink: keep it out of similarity
        flat = eligible.reshape(-1)
        order = torch.cumsum(flat.long(), 0) - 1 + self.seen_sample_tokens
        pick = flat & (order % self.stride == 0)
        at = torch.nonzero(pick).squeeze(1)
        slots = (order[at] // self.stride).long()
        keep = slots < self.cfg.sample_tokens
        at, slots = at[keep], slots[keep]
        self.seen_sample_tokens += int(flat.sum())
        self.n_sampled = max(self.n_sampled, int(slots.max()) + 1 if slots.numel() else self.n_sampled)
        for g in self.groups:
            self.states[g.name].update(acts[g.name], ids_d, valid, row_ids.to(dev), at, slots)

    def state(self, done: int) -> dict[str, Any]:
        return {"done": done, "seen_sample_tokens": self.seen_sample_tokens, "n_sampled": self.n_sampled,
                "groups": {name: s.state() for name, s in self.states.items()}}

    def load(self, state: dict[str, Any]) -> int:
        self.seen_sample_tokens = int(state["seen_sample_tokens"])
        self.n_sampled = int(state["n_sampled"])
        for name, s in state["groups"].items():
            self.states[name].load(s)
        return int(state["done"])


def run_scan(scanner: Scanner, batches: list, start: int, checkpoint: Callable[[int], None],
             progress: Callable[[BuildProgress], None] | None = None,
             should_stop: Callable[[], bool] | None = None, checkpoint_every_s: float = 60.0) -> str:
    """Process ``batches[start:]``; checkpoint every ``checkpoint_every_s`` and when stopped.

    Returns "complete" or "stopped".
    """
    total = len(batches)
    t0 = time.perf_counter()
    last_ckpt = t0
    tokens_here = 0
    for i in range(start, total):
        if should_stop is not None and should_stop():
            checkpoint(i)
            if progress:
                progress(BuildProgress(i, total, tokens_here, 0.0, None, status="stopped"))
            return "stopped"
        row_ids, ids, mask = batches[i]
        scanner.step(row_ids, ids, mask)
        tokens_here += int(mask.sum())
        elapsed = time.perf_counter() - t0
        rate = tokens_here / elapsed if elapsed > 0 else 0.0
        remaining = total - i - 1
        eta = elapsed / (i + 1 - start) * remaining
        if progress:
            progress(BuildProgress(i + 1, total, tokens_here, rate, eta))
        if time.perf_counter() - last_ckpt > checkpoint_every_s and remaining:
            checkpoint(i + 1)
            last_ckpt = time.perf_counter()
    return "complete"


def top_token_counts(tok_ids: torch.Tensor, tok_vals: torch.Tensor, n: int = 10) -> list[list[tuple[int, int, float]]]:
    """Per unit: (token id, how many of the top positions it carries, its best activation), most frequent first."""
    ids = tok_ids.T.tolist()
    vals = tok_vals.T.tolist()
    out = []
    for unit_ids, unit_vals in zip(ids, vals, strict=True):
        counts: dict[int, list[float]] = {}
        for tid, v in zip(unit_ids, unit_vals, strict=True):
            if tid < 0 or not math.isfinite(v):
                continue
            entry = counts.setdefault(tid, [0, -math.inf])
            entry[0] += 1
            entry[1] = max(entry[1], v)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))[:n]
        out.append([(tid, int(c), float(v)) for tid, (c, v) in ranked])
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def state_path(db_path: Path) -> Path:
    return db_path.with_suffix(".state.pt")
