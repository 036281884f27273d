"""Streaming per-cell lens statistics: top-k, entropy, KL to final, rank / log-prob of a target.

Hand-written because tuned-lens's ``PredictionTrajectory`` keeps the whole
layers x positions x vocabulary log-prob tensor in numpy (~13 GB at 256 tokens on SmolLM2) and then
makes several full passes (an argsort of it for the rank). Here every cell (one per layer and
position) goes through the unembedding together, one vocabulary slice at a time: each slice's logits
[cells, slice] update an online softmax (running max, normaliser, sum of p * logit), a running
top-k and a count of logits above the target's, then the slice is dropped. Peak memory is one slice
(~32 MB), and the slice matmuls (all cells x a narrow slice of W) run at full BLAS speed, faster than
one big [cells, V] matmul that must page in its GB-sized output. The formulas are tuned-lens's
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
SLICE_BYTES = 32 << 20  # one [cells, slice] float32 logits buffer
BLOCK_BYTES = 2 << 20  # rows of a slice that go through the elementwise passes together


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


def slice_width(n_cells: int, vocab: int, budget_bytes: int = SLICE_BYTES) -> int:
    """Vocabulary columns per slice so one float32 [n_cells, slice] buffer fits ``budget_bytes``.

    At most 2048: the per-slice sum of p * logit is a float32 BLAS dot whose error grows with its
    length (16k columns gave 1e-4 nats of entropy error on SmolLM2, 2k gives 1e-7).
    """
    width = budget_bytes // (4 * max(n_cells, 1))
    return int(min(vocab, 2048, max(256, width // 256 * 256)))


class OnlineSoftmax:
    """Per-row softmax statistics accumulated over vocabulary slices (flash-attention style).

    For each row it keeps the running max ``m`` (float32, the exact shift applied to the logits),
    ``z = sum exp(l - m)`` and ``y = sum exp(l - m) (l - m)`` in float64 on the CPU, the running top-k,
    and the number of logits strictly above the target's logit ``target_logit``.
    """

    def __init__(self, n_rows: int, k: int, target_logit: torch.Tensor, targets: torch.Tensor, vocab: int) -> None:
        dev = target_logit.device
        self.k, self.targets = min(k, vocab), targets.to(dev)
        self.target_logit = target_logit.float()
        self.m = torch.full((n_rows,), -math.inf, device=dev)
        self.z = torch.zeros(n_rows, dtype=torch.float64)
        self.y = torch.zeros(n_rows, dtype=torch.float64)
        self.above = torch.zeros(n_rows, dtype=torch.float64)
        self.exact_target = self.target_logit.clone()
        self.top_vals = torch.full((n_rows, 0), -math.inf, device=dev)
        self.top_ids = torch.zeros((n_rows, 0), dtype=torch.int64, device=dev)
        self._work: torch.Tensor | None = None

    def _buffer(self, n: int, width: int, like: torch.Tensor) -> torch.Tensor:
        if self._work is None or self._work.numel() < n * width or self._work.device != like.device:
            self._work = torch.empty(n * width, device=like.device)
        return self._work[: n * width].view(n, width)

    def _merge_top(self, logits: torch.Tensor, slice_max: torch.Tensor, v0: int) -> None:
        """Merge the slice's top-k into the running top-k, only for rows whose slice max can enter it.

        After the first slices most rows' k-th best already beats the whole slice, so a row max (cheap)
        filters the rows that need a top-k (5x dearer per row)."""
        k = min(self.k, logits.shape[1])
        if self.top_vals.shape[1] < self.k:
            rows = None
        else:
            rows = (slice_max > self.top_vals[:, -1]).nonzero()[:, 0]
            if rows.numel() == 0:
                return
        sub = logits if rows is None else logits.index_select(0, rows)
        vals, ids = sub.topk(k, dim=-1)
        old_vals = self.top_vals if rows is None else self.top_vals.index_select(0, rows)
        old_ids = self.top_ids if rows is None else self.top_ids.index_select(0, rows)
        vals, ids = torch.cat([old_vals, vals], 1), torch.cat([old_ids, ids + v0], 1)
        best, order = vals.topk(min(self.k, vals.shape[1]), dim=-1)
        best_ids = ids.gather(1, order)
        if rows is None:
            self.top_vals, self.top_ids = best, best_ids
        else:
            self.top_vals[rows], self.top_ids[rows] = best, best_ids

    def add(self, logits: torch.Tensor, v0: int) -> None:
        """Fold in the logits of vocabulary columns [v0, v0 + width) (the tensor is overwritten)."""
        n, width = logits.shape
        slice_max = logits.amax(-1)
        self._merge_top(logits, slice_max, v0)
        # the target's own logit, exactly as this matmul produced it (the precomputed one may differ
        # in the last bit, and would then count the target as above itself)
        in_slice = (self.targets >= v0) & (self.targets < v0 + width)
        if bool(in_slice.any()):
            rows = in_slice.nonzero()[:, 0]
            self.exact_target[rows] = logits[rows, self.targets[rows] - v0]
        m_new = torch.maximum(self.m, slice_max)
        above, z_s, y_s = (torch.empty(n, device=logits.device) for _ in range(3))
        # On the CPU the elementwise passes go block by block of rows, so each block stays in cache
        # across its five passes and the work buffer is ~2 MB instead of a second copy of the slice.
        block = max(1, BLOCK_BYTES // (4 * width)) if logits.device.type == "cpu" else n  # GPUs: one launch
        for r0 in range(0, n, block):
            r1 = min(n, r0 + block)
            blk, work = logits[r0:r1], self._buffer(r1 - r0, width, logits)
            # logits above the target's: a comparison written as 0/1 floats and summed (exact up to
            # 2^24 columns) is 10x faster than counting a bool tensor
            torch.gt(blk, self.target_logit[r0:r1, None], out=work)
            torch.sum(work, -1, out=above[r0:r1])
            shifted = blk.sub_(m_new[r0:r1, None])
            torch.exp(shifted, out=work)
            torch.sum(work, -1, out=z_s[r0:r1])
            y_s[r0:r1] = torch.einsum("nv,nv->n", work, shifted)  # a batched dot (BLAS); vecdot is 4x slower
        self.above += above.cpu().double()
        z_s, y_s = z_s.cpu().double(), y_s.cpu().double()
        m_old, m_new_d = self.m.cpu().double(), m_new.cpu().double()
        scale = torch.exp(m_old - m_new_d)  # 0 on the first slice (m_old = -inf)
        first = torch.isinf(m_old)
        delta = torch.where(first, 0.0, m_old - m_new_d)
        self.y = scale * (self.y + delta * self.z) + y_s
        self.z = scale * self.z + z_s
        self.m = m_new

    def result(self) -> dict[str, torch.Tensor]:
        """Per-row numbers (float64 on the CPU) once every slice has been added."""
        valid = (self.targets >= 0).cpu()
        m = self.m.cpu().double()
        lse = torch.log(self.z)  # log-sum-exp of the logits shifted by their max
        top_vals, target_logit = self.top_vals.cpu().double(), self.exact_target.cpu().double()
        # the precomputed target logit may sit one ulp below the exact one; the target never counts itself
        self_counted = (self.exact_target > self.target_logit).cpu().double()
        return {
            "top_ids": self.top_ids.cpu(),
            "top_probs": torch.exp(top_vals - m[:, None] - lse[:, None]).float(),
            "max_prob": torch.exp(top_vals[:, 0] - m - lse),
            "entropy": lse - self.y / self.z,
            "rank": torch.where(valid, self.above - self_counted + 1, torch.nan),
            "lp": torch.where(valid, target_logit - m - lse, torch.nan),
            "full_lse": lse + m,
        }


def final_terms(final_logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, block: int = 2048,
                rows: int = 32):
    """For each position: u = p_f @ W [T, d], p_f . b [T] and sum p_f log p_f [T], all float64.

    p_f comes from a float64 softmax and u is summed in float64 over short vocabulary blocks: a float32
    softmax or one long float32 accumulation gives KL errors of 5e-4..3e-3 nats on SmolLM2. This costs
    about one float32 unembedding of the window, once per window (not per layer); positions go
    ``rows`` at a time so the float64 copies stay small.
    """
    weight = weight.cpu().float()  # float64 work happens on the CPU (MPS has no float64)
    bias = bias.cpu().double() if bias is not None else None
    n_pos = final_logits.shape[0]
    u = torch.zeros(n_pos, weight.shape[1], dtype=torch.float64)
    pb = torch.zeros(n_pos, dtype=torch.float64)
    neg_h = torch.zeros(n_pos, dtype=torch.float64)
    for t0 in range(0, n_pos, rows):
        logp = final_logits[t0 : t0 + rows].cpu().double().log_softmax(-1)
        p = logp.exp()
        p32 = p.float()
        for v0 in range(0, p.shape[1], block):  # float32 products, float64 sums of short blocks
            u[t0 : t0 + rows] += (p32[:, v0 : v0 + block] @ weight[v0 : v0 + block]).double()
        neg_h[t0 : t0 + rows] = torch.linalg.vecdot(p, logp)
        if bias is not None:
            pb[t0 : t0 + rows] = p @ bias
    return u, pb, neg_h


def _sweep(n: int, vocab: int, k: int, targets: torch.Tensor, target_logit: torch.Tensor,
           fill: Callable[[torch.Tensor, int, int], None], device: torch.device) -> dict[str, torch.Tensor]:
    """Run an OnlineSoftmax over the vocabulary; ``fill(buffer, v0, v1)`` writes the slice's logits."""
    acc = OnlineSoftmax(n, k, target_logit, targets, vocab)
    width = slice_width(n, vocab)
    storage = torch.empty(n * width, device=device)
    for v0 in range(0, vocab, width):
        v1 = min(vocab, v0 + width)
        logits = storage[: n * (v1 - v0)].view(n, v1 - v0)
        fill(logits, v0, v1)
        acc.add(logits, v0)
    return acc.result()


@torch.inference_mode()
def stream_stats(
    rows: Sequence[Callable[[], torch.Tensor]],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    final_logits: torch.Tensor,
    targets: Sequence[int],
    k: int = 10,
    final_row: bool = True,
) -> CellStats:
    """Statistics for each row producer (a callable returning the normalised hidden [T, d] to decode).

    ``final_logits`` [T, V] is the model's output (KL reference, and the last row when ``final_row``).
    ``targets[t]`` is the true next token id or -1.
    """
    n_pos, vocab = final_logits.shape
    n_rows = len(rows) + (1 if final_row else 0)
    w = weight.float()
    b = bias.float() if bias is not None else None
    dev = w.device
    tgt = torch.as_tensor(list(targets), dtype=torch.int64)
    top_ids = np.zeros((n_rows, n_pos, min(k, vocab)), dtype=np.int64)
    top_probs = np.zeros((n_rows, n_pos, min(k, vocab)), dtype=np.float32)
    arrays = {n: np.full((n_rows, n_pos), np.nan) for n in ("max_prob", "entropy", "kl", "rank", "lp")}

    def store(r0: int, r1: int, out: dict[str, torch.Tensor]) -> None:
        top_ids[r0:r1] = out["top_ids"].numpy().reshape(r1 - r0, n_pos, -1)
        top_probs[r0:r1] = out["top_probs"].numpy().reshape(r1 - r0, n_pos, -1)
        for name in ("max_prob", "entropy", "rank", "lp", "kl"):
            arrays[name][r0:r1] = out[name].numpy().reshape(r1 - r0, n_pos)

    if rows:
        # every cell of every layer at once: [layers * T, d], row-major (layer, position)
        hidden = torch.cat([producer().float().to(dev) for producer in rows])
        cell_tgt = tgt.repeat(len(rows))
        # each cell's target logit, one layer at a time (a gather of W rows is [T, d] per layer)
        tgt_dev = tgt.clamp(min=0).to(dev)
        w_tgt = w[tgt_dev]
        tgt_logit = torch.cat([torch.linalg.vecdot(h, w_tgt) for h in hidden.view(len(rows), n_pos, -1)])
        if b is not None:
            tgt_logit += b[tgt_dev].repeat(len(rows))

        def unembed(out: torch.Tensor, v0: int, v1: int) -> None:
            torch.matmul(hidden, w[v0:v1].T, out=out)
            if b is not None:
                out += b[v0:v1]

        res = _sweep(hidden.shape[0], vocab, k, cell_tgt, tgt_logit, unembed, dev)
        u, pb, neg_h = final_terms(final_logits, w, b)
        # sum_v p_f(v) * logit_v per cell, one layer at a time (a float64 copy of one layer only)
        per_layer = hidden.view(len(rows), n_pos, -1)
        dot = torch.cat([torch.linalg.vecdot(h.cpu().double(), u) + pb for h in per_layer])
        res["kl"] = neg_h.repeat(len(rows)) - dot + res["full_lse"]
        store(0, len(rows), res)
    if final_row:
        final = final_logits.to(dev).float()

        def copy(out: torch.Tensor, v0: int, v1: int) -> None:
            out.copy_(final[:, v0:v1])

        res = _sweep(n_pos, vocab, k, tgt, final.gather(1, tgt.clamp(min=0).to(dev)[:, None])[:, 0], copy, dev)
        res["kl"] = torch.zeros(n_pos, dtype=torch.float64)
        store(n_rows - 1, n_rows, res)
    return CellStats(top_ids, top_probs, arrays["max_prob"], arrays["entropy"], arrays["kl"], arrays["rank"],
                     arrays["lp"])


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
