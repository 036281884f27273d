"""Streaming per-cell lens statistics: top-k, entropy, KL to final, rank / log-prob of a target.

Hand-written because tuned-lens's ``PredictionTrajectory`` keeps the whole
layers x positions x vocabulary log-prob tensor in numpy (~13 GB at 256 tokens on SmolLM2) and then
makes several full passes (an argsort of it for the rank). Here the rows (one per layer and position)
go through the unembedding in chunks; each chunk's logits are reduced to a handful of numbers per cell
and dropped, so peak memory is one chunk of logits. The formulas are the same as tuned-lens's
(natural log, nats): entropy = -sum p log p, KL(final || lens) = sum p_f (log p_f - log p),
cross-entropy = -log p[target], rank = 1 + #{v : logit_v > logit_target}, max prob = max p.

KL to final uses sum_v p_f(v) * logit_v = h . (p_f @ W) + p_f . b, so it needs no extra pass over
the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

STAT_NAMES = ("max_prob", "entropy", "kl_final", "rank", "logprob", "cross_entropy")


@dataclass
class CellStats:
    """Statistics for R rows (layers) x T positions; ``top_ids``/``top_probs`` are [R, T, k].

    Target-based arrays (rank, logprob, cross_entropy) hold NaN where a position has no target.
    """

    top_ids: np.ndarray
    top_probs: np.ndarray
    max_prob: np.ndarray
    entropy: np.ndarray
    kl_final: np.ndarray
    rank: np.ndarray
    logprob: np.ndarray

    @property
    def cross_entropy(self) -> np.ndarray:
        return -self.logprob

    def get(self, name: str) -> np.ndarray:
        return getattr(self, name)


class _Acc:
    """Collects chunk results into [R, T] arrays."""

    def __init__(self, n_rows: int, n_pos: int, k: int) -> None:
        shape = (n_rows, n_pos)
        self.top_ids = np.zeros((*shape, k), dtype=np.int64)
        self.top_probs = np.zeros((*shape, k), dtype=np.float32)
        self.arrays = {n: np.full(shape, np.nan, dtype=np.float64) for n in ("max_prob", "entropy", "kl", "rank", "lp")}

    def result(self) -> CellStats:
        a = self.arrays
        return CellStats(self.top_ids, self.top_probs, a["max_prob"], a["entropy"], a["kl"], a["rank"], a["lp"])


class _Buffers:
    """Reused [n, V] work buffers: fresh 50 MB tensors per chunk cost more in page faults than the math."""

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None

    def get(self, n: int, v: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.shape is None or self.shape[0] < n or self.shape[1] != v or self.logits.device != torch.device(device):
            self.logits, self.exp = torch.empty(n, v, device=device), torch.empty(n, v, device=device)
            self.mask = torch.empty(n, v, dtype=torch.bool, device=device)
            self.shape = (n, v)
        return self.logits[:n], self.exp[:n], self.mask[:n]


def _reduce(
    logits: torch.Tensor,
    k: int,
    targets: torch.Tensor,
    final_dot: torch.Tensor | None,
    final_neg_entropy: torch.Tensor | None,
    bufs: _Buffers,
) -> dict[str, torch.Tensor]:
    """Per-row numbers from a [n, V] logits chunk (consumed in place).

    ``final_dot[n]`` = sum_v p_f(v) logit_v for each row; ``final_neg_entropy[n]`` = sum p_f log p_f.
    """
    dev = logits.device
    _, e, mask = bufs.get(*logits.shape, device=dev)
    top_vals, top_ids = logits.topk(k, dim=-1)
    m_dev = top_vals[:, :1]
    valid = targets >= 0
    tgt_dev = logits.gather(1, targets.clamp(min=0).to(dev)[:, None])
    torch.gt(logits, tgt_dev, out=mask)
    rank = (torch.count_nonzero(mask, dim=-1) + 1).cpu()
    s = logits.sub_(m_dev)  # shifted logits, max 0
    torch.exp(s, out=e)
    # per-row numbers go to the CPU for the float64 part (MPS has no float64)
    z = e.sum(-1).cpu().double()
    es = torch.linalg.vecdot(e, s).cpu().double()
    top_vals, top_ids, m, tgt_logit = top_vals.cpu(), top_ids.cpu(), m_dev.cpu(), tgt_dev.cpu()
    lse = torch.log(z)  # log-sum-exp of the shifted logits
    out = {
        "top_ids": top_ids,
        "top_probs": torch.exp((top_vals - m).double() - lse[:, None]).float(),
        "max_prob": torch.exp(-lse),
        "entropy": lse - es / z,
        "rank": torch.where(valid, rank.double(), torch.nan),
        "lp": torch.where(valid, (tgt_logit[:, 0] - m[:, 0]).double() - lse, torch.nan),
    }
    if final_dot is not None and final_neg_entropy is not None:
        full_lse = lse + m[:, 0].double()
        out["kl"] = final_neg_entropy - final_dot + full_lse
    return out


def final_terms(final_logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, block: int = 512):
    """For each position: u = p_f @ W [T, d], p_f . b [T] and sum p_f log p_f [T], all float64.

    p_f comes from a float64 softmax and u is summed in float64 over short vocabulary blocks: a float32
    softmax or one long float32 accumulation gives KL errors of 5e-4..3e-3 nats on SmolLM2. This costs
    about one float32 unembedding of the window, once per window (not per layer).
    """
    final_logits, weight = final_logits.cpu(), weight.cpu()  # float64 work happens on the CPU
    bias = bias.cpu() if bias is not None else None
    logp = final_logits.double().log_softmax(-1)
    p = logp.exp()
    u = torch.zeros(p.shape[0], weight.shape[1], dtype=torch.float64)
    p32, w32 = p.float(), weight.float()
    for v0 in range(0, p.shape[1], block):  # float32 products, float64 sums of short blocks
        u += (p32[:, v0 : v0 + block] @ w32[v0 : v0 + block]).double()
    neg_h = torch.linalg.vecdot(p, logp)
    pb = p @ bias.double() if bias is not None else torch.zeros(p.shape[0], dtype=torch.float64)
    return u, pb, neg_h


@torch.inference_mode()
def stream_stats(
    rows: Sequence[Callable[[], torch.Tensor]],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    final_logits: torch.Tensor,
    targets: Sequence[int],
    k: int = 10,
    chunk_cells: int = 256,
    final_row: bool = True,
) -> CellStats:
    """Statistics for each row producer (a callable returning the normalised hidden [T, d] to decode).

    ``final_logits`` [T, V] is the model's output (KL reference, and the last row when ``final_row``).
    ``targets[t]`` is the true next token id or -1. Logits are built ``chunk_cells`` cells at a time.
    """
    n_pos = final_logits.shape[0]
    n_rows = len(rows) + (1 if final_row else 0)
    acc = _Acc(n_rows, n_pos, k)
    w = weight.float()
    b = bias.float() if bias is not None else None
    u, pb, neg_h = final_terms(final_logits, w, b)
    tgt = torch.as_tensor(list(targets), dtype=torch.int64)
    bufs = _Buffers()

    def store(rows_idx: np.ndarray, pos_idx: np.ndarray, out: dict[str, torch.Tensor]) -> None:
        acc.top_ids[rows_idx, pos_idx] = out["top_ids"].numpy()
        acc.top_probs[rows_idx, pos_idx] = out["top_probs"].numpy()
        for name in ("max_prob", "entropy", "rank", "lp", "kl"):
            if name in out:
                acc.arrays[name][rows_idx, pos_idx] = out[name].numpy()

    # Cells of all layers go through the unembedding together, chunk_cells at a time, so a narrow
    # window still gives full-size matmuls (each matmul reads all of W once).
    hidden = torch.cat([producer().float() for producer in rows]) if rows else torch.zeros(0, w.shape[1])
    n_cells = hidden.shape[0]
    cell_row = np.repeat(np.arange(len(rows)), n_pos)
    cell_pos = np.tile(np.arange(n_pos), len(rows))
    step = max(1, chunk_cells)
    for c0 in range(0, n_cells, step):
        hc = hidden[c0 : c0 + step]
        pos = torch.from_numpy(cell_pos[c0 : c0 + step])
        logits = bufs.get(hc.shape[0], w.shape[0], device=hc.device)[0]
        torch.matmul(hc, w.T, out=logits)
        if b is not None:
            logits += b
        dot = torch.linalg.vecdot(hc.cpu().double(), u[pos]) + pb[pos]
        out = _reduce(logits, k, tgt[pos], dot, neg_h[pos], bufs)
        store(cell_row[c0 : c0 + step], cell_pos[c0 : c0 + step], out)
    if final_row:
        r = n_rows - 1
        for t0 in range(0, n_pos, step):
            logits = final_logits[t0 : t0 + step].to(w.device).float().clone()
            out = _reduce(logits, k, tgt[t0 : t0 + step], None, None, bufs)
            out["kl"] = torch.zeros(logits.shape[0], dtype=torch.float64)
            n = logits.shape[0]
            store(np.full(n, r), np.arange(t0, t0 + n), out)
    return acc.result()


@torch.inference_mode()
def pair_divergence(
    rows_a: Sequence[Callable[[], torch.Tensor]],
    rows_b: Sequence[Callable[[], torch.Tensor]],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kind: str = "js",
    chunk_cells: int = 256,
) -> np.ndarray:
    """[R, T] divergence between two lenses' distributions per cell, streamed.

    ``kind``: "js" (Jensen-Shannon, nats, with the mixture M=(P+Q)/2) or "kl" (KL(A || B)).
    """
    w = weight.float()
    out_rows = []
    for fa, fb in zip(rows_a, rows_b, strict=True):
        ha, hb = fa().float(), fb().float()
        vals = []
        for t0 in range(0, ha.shape[0], chunk_cells):
            la = ha[t0 : t0 + chunk_cells] @ w.T
            lb = hb[t0 : t0 + chunk_cells] @ w.T
            if bias is not None:
                la += bias
                lb += bias
            lpa, lpb = la.log_softmax(-1), lb.log_softmax(-1)
            pa = lpa.exp()
            if kind == "kl":
                vals.append(torch.linalg.vecdot(pa, lpa - lpb).cpu().double())
                continue
            pb_ = lpb.exp()
            lm = torch.logaddexp(lpa, lpb) - math.log(2.0)  # log of the mixture, finite where p underflows
            js = 0.5 * torch.linalg.vecdot(pa, lpa - lm) + 0.5 * torch.linalg.vecdot(pb_, lpb - lm)
            vals.append(js.cpu().double())
        out_rows.append(torch.cat(vals).clamp_min(0.0).numpy())  # >= 0 exactly; float32 rounding gives -1e-7
    return np.stack(out_rows)
