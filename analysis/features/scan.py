"""Corpus scan: every nonzero feature activation over a token budget, stored sparsely, cached on disk.

One pass: the training corpus's held-out documents (:mod:`analysis.corpus.training`; the SAE never saw them)
are packed into ``context``-token rows (:data:`analysis.io.RUN_LIKE`), run in batches with capture (stopping
after the SAE's layer), encoded with sae-lens, and every nonzero (token, feature, value) is kept. The first
position of each row (an attention sink) and massive-activation tokens above the SAE's ``max_norm`` are left
out, as in training. Sorted by feature once, each feature's top examples, quantile-bin samples, histogram,
density and correlations are slices of that table. Hand-written (not sae-dashboard) because sae-dashboard
needs a TransformerLens model; this runs on our HF capture sites.

    python -m analysis.features.scan --sae embedded --tokens 50000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.cache import content_key
from analysis.capture import capture
from analysis.errors import InputError
from analysis.features.sae import LoadedSAE, check_fit, in_distribution, load_sae
from analysis.io import RUN_LIKE, pack_rows
from analysis.jobs import Job, quiet_job
from analysis.models import LoadedModel
from analysis.params import parse_int
from analysis.runtime import Runtime

DEFAULT_TOKENS = 20_000
MAX_TOKENS = 1_000_000
CONTEXT = 128
SCAN_VERSION = 3  # 3: held-out rows packed RUN_LIKE; sink and massive tokens left out


@dataclass
class Scan:
    """Sparse activations sorted by feature: ``feature_ptr[f]:feature_ptr[f+1]`` slices ``pos``/``val``."""

    token_ids: np.ndarray  # [N] int32, all scanned tokens (contexts back to back)
    context: int
    feature_ptr: np.ndarray  # [d_sae + 1] int64
    pos: np.ndarray  # [nnz] int32 global token index
    val: np.ndarray  # [nnz] float32
    n_tokens: int
    seconds: float
    sae_ref: str
    model_id: str

    def feature_slice(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.feature_ptr[feature]), int(self.feature_ptr[feature + 1])
        return self.pos[lo:hi], self.val[lo:hi]

    def density(self) -> np.ndarray:
        """Fraction of scanned tokens on which each feature fires, [d_sae]."""
        return np.diff(self.feature_ptr) / max(self.n_tokens, 1)

    def max_acts(self) -> np.ndarray:
        out = np.zeros(len(self.feature_ptr) - 1, dtype=np.float32)
        counts = np.diff(self.feature_ptr)
        nonempty = counts > 0
        starts = self.feature_ptr[:-1][nonempty]
        out[nonempty] = np.maximum.reduceat(self.val, starts) if len(self.val) else 0
        return out


def corpus_windows(lm: LoadedModel, texts: list[str], n_tokens: int, context: int = CONTEXT) -> np.ndarray:
    """[n, context] token rows packed from ``texts`` (:data:`analysis.io.RUN_LIKE`): enough rows that at least
    ``n_tokens`` positions are scored (every row's first position is not)."""
    n_rows = -(-max(n_tokens, 1) // (context - 1))
    rows = [r for r in pack_rows(lm.tokenizer, texts, n_rows * context, context, RUN_LIKE) if len(r) == context]
    if not rows:
        raise InputError(f"The corpus has no text of {context} tokens.")
    return np.asarray(rows, dtype=np.int32)


def scan_corpus(lm: LoadedModel, sae: LoadedSAE, windows: np.ndarray, batch: int = 8, job: Job | None = None) -> Scan:
    """Run the windows through the model up to the SAE's site, encode, keep nonzeros sorted by feature."""
    check_fit(sae, lm)
    job = job or quiet_job()
    start = time.time()
    pos_parts: list[np.ndarray] = []
    feat_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    n, context = windows.shape
    total = (n + batch - 1) // batch
    job.phase(f"scanning {n * context:,} held-out tokens with {lm.model_id}", total=total, unit="batches")
    for lo in range(0, n, batch):
        job.check()
        ids = torch.from_numpy(windows[lo : lo + batch].astype(np.int64))
        acts = capture(lm, ids, [sae.site], logits=False, stop_early=True).acts[sae.site]
        keep = in_distribution(acts, 1, sae.max_norm).cpu()  # not the sink, not massive activations
        feats = sae.encode(acts) * keep[..., None]
        feats = feats.reshape(-1, sae.d_sae)
        nz = feats.nonzero(as_tuple=False)
        pos_parts.append((nz[:, 0] + lo * context).numpy().astype(np.int32))
        feat_parts.append(nz[:, 1].numpy().astype(np.int32))
        val_parts.append(feats[nz[:, 0], nz[:, 1]].numpy().astype(np.float32))
        job.advance()
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int32)
    feat = np.concatenate(feat_parts) if feat_parts else np.zeros(0, np.int32)
    val = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
    order = np.argsort(feat, kind="stable")
    counts = np.bincount(feat, minlength=sae.d_sae)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Scan(token_ids=windows.reshape(-1).astype(np.int32), context=context, feature_ptr=ptr,
                pos=pos[order], val=val[order], n_tokens=int(n * (context - 1)), seconds=time.time() - start,
                sae_ref=sae.ref, model_id=lm.model_id)


def sae_fingerprint(sae: LoadedSAE) -> list:
    """Identifies the SAE's weights in cache keys (ref alone is not enough after retraining)."""
    w = sae.W_dec()
    return [sae.site, sae.d_sae, float(w[:8].sum()), float(w.abs().sum())]


def scan_key(model_id: str, sae: LoadedSAE, n_tokens: int) -> str:
    return content_key("features-scan", SCAN_VERSION, model_id, sae_fingerprint(sae), n_tokens, CONTEXT)


def cached_scan(runtime: Runtime, model_id: str, sae: LoadedSAE, n_tokens: int) -> Scan | None:
    """The scan from the disk cache, or None (never computes; an unreadable entry counts as absent)."""
    try:
        scan = runtime.disk.get(scan_key(model_id, sae, n_tokens))
    except Exception:  # noqa: BLE001 - e.g. pickled by an older version
        return None
    return scan if isinstance(scan, Scan) else None


def scan_texts(n_tokens: int) -> list[str]:
    """The scan's corpus: held-out documents of the training corpus (never trained on), about ``n_tokens``."""
    from analysis.corpus.training import training_corpus

    return training_corpus(max_chars=0, heldout_chars=n_tokens * 6 + 20_000).heldout


def get_scan(runtime: Runtime, model_id: str, sae: LoadedSAE, n_tokens: int = DEFAULT_TOKENS,
             job: Job | None = None) -> Scan:
    """The corpus scan for (model, SAE, budget): from disk, or computed once and stored."""
    n_tokens = parse_int(n_tokens, "Scan tokens", 1000, MAX_TOKENS, field="features-scan-tokens")
    lm = runtime.model(model_id, job)

    def compute() -> Scan:
        return scan_corpus(lm, sae, corpus_windows(lm, scan_texts(n_tokens), n_tokens), job=job)

    key = scan_key(model_id, sae, n_tokens)
    if key in runtime.disk and cached_scan(runtime, model_id, sae, n_tokens) is None:
        runtime.disk.cache.delete(key)  # unreadable entry: compute again
    return runtime.disk.get_or_compute(key, compute)


@dataclass
class Example:
    """One snippet: tokens around the activating position, with the feature's value on each token."""

    tokens: list[str]
    acts: list[float]
    center: int  # index of the activating token in ``tokens``
    value: float


def _snippet(lm: LoadedModel, scan: Scan, feature_vals: dict[int, float], position: int, value: float,
             before: int, after: int) -> Example:
    ctx_start = (position // scan.context) * scan.context
    lo = max(ctx_start, position - before)
    hi = min(ctx_start + scan.context, position + after + 1)
    ids = scan.token_ids[lo:hi].tolist()
    return Example(tokens=lm.decode(ids),
                   acts=[feature_vals.get(p, 0.0) for p in range(lo, hi)], center=position - lo, value=value)


@dataclass
class FeatureStats:
    """What the dashboard shows from the scan for one feature."""

    feature: int
    n_tokens: int
    density: float
    max_act: float
    top: list[Example]
    bins: list[tuple[float, float, list[Example]]]  # (low, high, examples) quantile bins of nonzero values
    hist_counts: list[int]
    hist_edges: list[float]


def feature_stats(lm: LoadedModel, scan: Scan, feature: int, n_top: int = 10, n_bins: int = 5,
                  per_bin: int = 3, before: int = 12, after: int = 4, seed: int = 0) -> FeatureStats:
    """Top examples, quantile-bin samples and histogram of one feature's nonzero activations."""
    pos, val = scan.feature_slice(feature)
    lookup = dict(zip(pos.tolist(), val.tolist(), strict=True)) if len(pos) <= 200_000 else {}
    order = np.argsort(-val, kind="stable")
    top = [_snippet(lm, scan, lookup, int(pos[i]), float(val[i]), before, after) for i in order[:n_top]]
    bins: list[tuple[float, float, list[Example]]] = []
    counts: list[int] = []
    edges: list[float] = []
    if len(val):
        qs = np.quantile(val, np.linspace(0, 1, n_bins + 1))
        rng = np.random.default_rng(seed)
        for b in range(n_bins):
            lo_v, hi_v = float(qs[b]), float(qs[b + 1])
            inside = np.nonzero((val >= lo_v) & ((val < hi_v) if b < n_bins - 1 else (val <= hi_v)))[0]
            pick = rng.choice(inside, size=min(per_bin, len(inside)), replace=False) if len(inside) else []
            bins.append((lo_v, hi_v, [_snippet(lm, scan, lookup, int(pos[i]), float(val[i]), before, after)
                                      for i in sorted(pick, key=lambda i: -val[i])]))
        hist, hist_edges = np.histogram(val, bins=40)
        counts, edges = hist.tolist(), hist_edges.tolist()
    return FeatureStats(feature=feature, n_tokens=scan.n_tokens, density=len(val) / max(scan.n_tokens, 1),
                        max_act=float(val.max()) if len(val) else 0.0, top=top, bins=bins[::-1],
                        hist_counts=counts, hist_edges=edges)


def features_by_top_token(scan: Scan, token_id: int, n_top: int = 10) -> list[tuple[int, int]]:
    """Features whose top-``n_top`` activations include ``token_id``: [(feature, hits)] by hits."""
    out = []
    for f in range(len(scan.feature_ptr) - 1):
        pos, val = scan.feature_slice(f)
        if not len(val):
            continue
        top = pos[np.argsort(-val)[:n_top]]
        hits = int((scan.token_ids[top] == token_id).sum())
        if hits:
            out.append((f, hits))
    out.sort(key=lambda t: -t[1])
    return out


def main(argv: list[str] | None = None) -> int:
    from analysis.jobs import tqdm_job
    from analysis.runtime import get_runtime
    from analysis.settings import EMBEDDED_LM

    parser = argparse.ArgumentParser(description="Scan held-out text for an SAE's top activations.")
    parser.add_argument("--sae", default="embedded")
    parser.add_argument("--model", default=EMBEDDED_LM)
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    args = parser.parse_args(argv)
    runtime = get_runtime()
    lm = runtime.model(args.model)
    sae = load_sae(runtime, args.sae, args.model, lm.device)
    scan = get_scan(runtime, args.model, sae, args.tokens, tqdm_job("features scan"))
    print(f"{scan.n_tokens:,} tokens, {len(scan.val):,} nonzeros, {scan.seconds:.1f} s; "
          f"alive features {(scan.density() > 0).sum()}/{sae.d_sae}")
    return 0


if __name__ == "__main__":
    # run the module's own import (not __main__) so the pickled Scan names analysis.features.scan.Scan
    from analysis.features.scan import main as _main

    raise SystemExit(_main())


def activation_matrix(scan: Scan) -> Any:
    """The scan as a sparse [positions, features] CSR matrix (positions = every scanned token slot)."""
    from scipy import sparse

    feats = np.repeat(np.arange(len(scan.feature_ptr) - 1, dtype=np.int32), np.diff(scan.feature_ptr))
    return sparse.csr_matrix((scan.val, (scan.pos, feats)), shape=(len(scan.token_ids), len(scan.feature_ptr) - 1))


def correlated_features(scan: Scan, matrix: Any, feature: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` features whose activations correlate most with ``feature``'s over the scanned tokens
    (Pearson, zeros included; SAEDashboard's feature-correlation table)."""
    n = matrix.shape[0]
    pos, val = scan.feature_slice(feature)
    if len(val) == 0:
        return []
    sums = np.asarray(matrix.sum(axis=0)).ravel()
    squares = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
    mean = sums / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    cross = np.asarray(matrix[pos].T @ val).ravel() / n  # E[x_f x_g]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (cross - mean[feature] * mean) / (std[feature] * std)
    corr[feature] = -np.inf
    corr[~np.isfinite(corr)] = -np.inf
    top = np.argsort(-corr)[:k]
    return [(int(g), float(corr[g])) for g in top if np.isfinite(corr[g])]
