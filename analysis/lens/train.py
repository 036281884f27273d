"""Train a tuned lens on the built-in offline corpus (``make lens``; the page's Train button).

tuned-lens's ``TunedLens`` module and its objective: for every layer l, KL(final || lens_l) at the
same position (``shift 0``), backpropagated one layer at a time, the unembedding matmul in bfloat16
(tuned-lens trains under bf16 autocast), gradient clipping at 1.0, weight decay, linear LR schedule with
warm-up — as in ``tuned_lens.scripts.train_loop.Train.execute``. That script itself cannot run here (its
data pipeline needs ``torchdata.dataloader2``, removed from torchdata, and it expects a hub dataset), so
this loop feeds it rows packed from the offline training corpus (:mod:`analysis.corpus.training`).
One deliberate difference for 2 CPU cores: Adam (tuned-lens's ``--optimizer adam`` option, with its
warm-up of min(1000, steps/5)) on 2,048 tokens per step instead of SGD on 2^18. bf16 matmuls use the
CPU's AMX/AVX512-BF16 units where present (4.5x float32 here); ``--precision float32`` turns them off.

CLI: ``python -m analysis.lens.train [--model ID] [--steps N] [--out DIR] ...`` (tqdm progress).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.io import RUN_LIKE, pack_rows
from analysis.jobs import Job, quiet_job, tqdm_job
from analysis.lens.grid import compute_stats
from analysis.lens.lenses import fresh_tuned_lens, load_tuned_lens, logit_lens, save_lens, trained_lens_dir
from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM


@dataclass
class TrainConfig:
    """Budget and optimiser of one training run (the defaults made the shipped lens: 256 x 2,048 tokens)."""

    model_id: str = EMBEDDED_LM
    steps: int = 256
    seq_len: int = 512
    batch_size: int = 4
    lr: float = 1e-3
    warmup_steps: int = -1  # -1 = tuned-lens's Adam default, min(1000, steps // 5)
    weight_decay: float = 1e-3
    heldout_rows: int = 32
    precision: str = "auto"  # auto | bfloat16 | float32 (the unembedding matmul of the loss)
    save_every: int = 0  # also save + evaluate every N steps (0 = only at the end)
    checkpoint_every: int = 8  # write a resumable checkpoint every N steps (0 = never)
    out: str | None = None
    seed: int = 0
    compare: str | None = None  # other lens folders (comma-separated) evaluated on the same held-out rows


@dataclass
class TrainResult:
    """What a run did; ``heldout_kl_*`` are mean KL to final (nats) over layers x held-out tokens."""

    out_dir: str
    steps_done: int
    tokens_seen: int
    seconds: float
    cancelled: bool
    heldout_tokens: int = 0
    heldout_kl_logit: float = float("nan")
    heldout_kl_tuned: float = float("nan")
    per_layer_kl_logit: list[float] = field(default_factory=list)
    per_layer_kl_tuned: list[float] = field(default_factory=list)
    per_layer_kl_compare: dict[str, list[float]] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)


def corpus_rows(lm, cfg: TrainConfig) -> tuple[torch.Tensor, list[list[int]]]:
    """Training rows [N, seq_len] (N = steps x batch, cycled if the corpus is short) and held-out rows,
    packed from the training corpus's disjoint train / held-out documents (:data:`analysis.io.RUN_LIKE`)."""
    from analysis.corpus.training import training_corpus

    n_tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    corpus = training_corpus(max_chars=int(n_tokens * 5.5) + 20_000, heldout_chars=cfg.heldout_rows * cfg.seq_len * 6)
    rows = [r for r in pack_rows(lm.tokenizer, corpus.train, n_tokens, cfg.seq_len, RUN_LIKE) if len(r) == cfg.seq_len]
    if not rows:
        raise InputError(f"The training corpus gave no row of {cfg.seq_len} tokens.")
    heldout = [r for r in pack_rows(lm.tokenizer, corpus.heldout, cfg.heldout_rows * cfg.seq_len, cfg.seq_len, RUN_LIKE)
               if len(r) == cfg.seq_len]
    return torch.tensor(rows), heldout


def evaluate(lm, lenses: dict[str, object], rows: list[list[int]], batch: int = 4,
             job: Job | None = None) -> dict[str, np.ndarray]:
    """Mean KL to final per layer (rows without the output row) for each lens over held-out ``rows``."""
    sums = {name: np.zeros(lm.info.n_layers) for name in lenses}
    count = 0
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(lm.info.n_layers)]
    from analysis.capture import Run

    for start in range(0, len(rows), batch):
        ids = torch.tensor(rows[start : start + batch])
        cap = capture(lm, ids, sites)
        for b in range(ids.shape[0]):
            row = ids[b].tolist()
            run = Run(lm.info.model_id, "", row, [""] * len(row), cap.logits[b].float(),
                      {k: v[b] for k, v in cap.acts.items()})
            for name, lens in lenses.items():
                stats = compute_stats(lm, run, lens, "resid", 0, len(row))
                sums[name] += stats.kl_final[:-1].sum(axis=1)
            count += len(row)
            if job is not None:
                job.advance()
    return {name: s / max(count, 1) for name, s in sums.items()} | {"_tokens": np.array([count])}


class LogSumExpUnembed(torch.autograd.Function):
    """logsumexp over the vocabulary of ``z @ W.T`` with the softmax kept (in W's dtype) for backward.

    Hand-written because autograd's logsumexp recomputes exp(logits - lse) in backward: keeping the
    probabilities halves the vocabulary-sized elementwise passes (0.95 -> 0.56 s per layer for 2,048 x
    49,152 on 2 cores). Rows go through in blocks so the float32 logits of one block stay small.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, weight: torch.Tensor, rows: int = 128) -> torch.Tensor:  # type: ignore[override]
        z_mm = z.reshape(-1, z.shape[-1]).to(weight.dtype)
        out = torch.empty(z_mm.shape[0], dtype=torch.float32, device=z.device)
        probs = torch.empty(z_mm.shape[0], weight.shape[0], dtype=weight.dtype, device=z.device)
        for start in range(0, z_mm.shape[0], rows):
            logits = (z_mm[start : start + rows] @ weight.T).float()
            peak = logits.amax(-1, keepdim=True)
            logits.sub_(peak).exp_()
            total = logits.sum(-1, keepdim=True)
            out[start : start + rows] = (peak + total.log())[:, 0]
            probs[start : start + rows] = logits.div_(total)
        ctx.save_for_backward(probs, weight)
        ctx.shape = z.shape
        return out.reshape(z.shape[:-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        probs, weight = ctx.saved_tensors
        scaled = probs.mul_(grad.reshape(-1, 1).to(probs.dtype))
        return (scaled @ weight).float().reshape(ctx.shape), None, None


def final_terms(final_logits: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The final distribution's terms of tuned-lens's loss, computed once for every layer of a batch.

    KL(final || lens) = sum p_f log p_f - sum p_f z + logsumexp(z) with z = norm(h') W^T (+ b); since
    sum p_f z = norm(h') . (p_f W) (+ p_f . b), the p_f terms need no vocabulary-sized pass per layer
    (the same value and gradient, ~2x less elementwise work on CPU). Returns (-H(p_f) - p_f.b, p_f W).
    """
    with torch.no_grad():
        logp_f = final_logits.float().log_softmax(-1)
        p_f = logp_f.exp()
        neg_h = torch.linalg.vecdot(p_f, logp_f)
        u = p_f @ weight.float()
        if bias is not None:
            neg_h = neg_h - p_f @ bias.float()
    return neg_h, u


def layer_kl(z_in: torch.Tensor, neg_h: torch.Tensor, u: torch.Tensor, weight_mm: torch.Tensor,
             bias: torch.Tensor | None) -> torch.Tensor:
    """KL(final || lens) per position for one layer's normed lens output ``z_in`` (see :func:`final_terms`)."""
    if bias is None:
        lse = LogSumExpUnembed.apply(z_in, weight_mm)
    else:  # rare (no supported decoder has an unembedding bias): autograd's own path
        logits = torch.nn.functional.linear(z_in.to(weight_mm.dtype), weight_mm).float() + bias.float()
        lse = torch.logsumexp(logits, dim=-1)
    return neg_h - torch.linalg.vecdot(z_in, u) + lse


def matmul_dtype(device: torch.device, precision: str) -> torch.dtype:
    """bfloat16 where the hardware has fast bf16 matmuls (CUDA, MPS, CPUs with AMX/AVX512-BF16), else float32."""
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision != "auto":
        raise InputError(f"Unknown precision '{precision}': use auto, bfloat16 or float32.")
    if device.type in ("cuda", "mps"):
        return torch.bfloat16
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("amx_bf16" in flags or "avx512_bf16" in flags) else torch.float32


CHECKPOINT_FILE = "glassbox_checkpoint.pt"
RESUME_KEYS = ("model_id", "steps", "seq_len", "batch_size", "lr", "warmup_steps", "weight_decay", "precision", "seed")


def _checkpoint_key(cfg: TrainConfig) -> dict:
    """The settings a checkpoint must share with a run to be resumed by it (the data order depends on them)."""
    return {name: getattr(cfg, name) for name in RESUME_KEYS}


def _save_checkpoint(path: Path, cfg: TrainConfig, step: int, lens, opt, sched, losses: list[float],
                     seconds: float) -> None:
    """Everything a later run needs to continue at ``step`` (written atomically: a kill never leaves half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": _checkpoint_key(cfg), "step": step, "lens": lens.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "losses": list(losses), "seconds": seconds}, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict | None:
    """The checkpoint at ``path`` when it was written by a run with the same settings, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is ignored, the run starts afresh
        return None
    return state if state.get("key") == _checkpoint_key(cfg) else None


def train_tuned_lens(runtime: Runtime, cfg: TrainConfig, job: Job | None = None) -> TrainResult:
    """Train, save in tuned-lens format, and evaluate on held-out text. Shared by CLI and page.

    Cancelling (``job``'s one cancel rule) stops after the current step and still saves and evaluates
    the lens trained so far (``cancelled`` in the result). Every ``checkpoint_every`` steps the run writes
    a checkpoint in its output folder; a later run with the same settings and folder continues from it
    (so a multi-hour training survives a killed process or the end of a session), and a run that
    completes removes it."""
    job = job or quiet_job()
    torch.manual_seed(cfg.seed)
    job.phase(f"loading {cfg.model_id}")
    lm = runtime.model(cfg.model_id, job)
    if not lm.info.is_causal or lm.tokenizer is None:
        raise InputError(f"Training a tuned lens needs a causal LM with a tokenizer; {cfg.model_id} is not one.")
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.seq_len < 8:
        raise InputError("steps and batch_size must be >= 1 and seq_len >= 8.")
    job.phase("packing the training corpus")
    blocks, heldout = corpus_rows(lm, cfg)
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(cfg.seed))
    lens = fresh_tuned_lens(runtime, lm)
    lens.layer_translators.train()  # not lens.train(): the unembed is the model's own (shared) norm and head
    params = [p for p in lens.parameters() if p.requires_grad]
    # tuned-lens's Optimizer(optimizer=adam): Adam(amsgrad=True, betas=(0.9, 0.999)), linear schedule with warm-up.
    from transformers import get_linear_schedule_with_warmup

    warmup = min(1000, cfg.steps // 5) if cfg.warmup_steps < 0 else cfg.warmup_steps
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), amsgrad=True, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, warmup, cfg.steps - warmup)
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(lm.info.n_layers)]
    weight, bias = lens.unembed.unembedding.weight, lens.unembed.unembedding.bias
    mm_dtype = matmul_dtype(lm.device, cfg.precision)
    weight_mm = weight.detach().to(mm_dtype)
    out_dir = Path(cfg.out) if cfg.out else trained_lens_dir(runtime.settings, cfg.model_id)
    checkpoint = out_dir / CHECKPOINT_FILE
    started = time.perf_counter()
    losses: list[float] = []
    first = 0
    resumed = _load_checkpoint(checkpoint, cfg)
    if resumed is not None:
        lens.load_state_dict(resumed["lens"])
        opt.load_state_dict(resumed["opt"])
        sched.load_state_dict(resumed["sched"])
        losses, first = list(resumed["losses"]), int(resumed["step"])
        started -= float(resumed["seconds"])  # wall time counts the earlier runs too
    cancelled = False
    job.phase("training", total=cfg.steps, unit="steps", done=first,
              message=f"{cfg.batch_size * cfg.seq_len:,} tokens per step" + (f"; resumed at step {first}" if first else ""))
    for step in range(first, cfg.steps):
        if job.should_stop():
            cancelled = True
            break
        idx = order[(torch.arange(cfg.batch_size) + step * cfg.batch_size) % len(blocks)]
        batch = blocks[idx]
        cap = capture(lm, batch, sites)
        neg_h, u = final_terms(cap.logits, weight, bias)
        total = 0.0
        for i, site in enumerate(sites):
            h = cap.acts[site].clone()  # inference tensor -> a normal one autograd may save
            z_in = lens.unembed.final_norm(lens.transform_hidden(h, i))
            kl = layer_kl(z_in, neg_h, u, weight_mm, bias)
            loss = kl.mean()
            loss.backward()
            total += loss.item()
            del kl
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        sched.step()
        losses.append(total / len(sites))
        job.update(step + 1, f"mean KL to final {losses[-1]:.3f} nats")
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            _save_checkpoint(checkpoint, cfg, step + 1, lens, opt, sched, losses, time.perf_counter() - started)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _finish(runtime, lm, lens, cfg, out_dir, heldout, losses, started, cancelled, job)
            lens.layer_translators.train()
            job.phase("training", total=cfg.steps, unit="steps", done=step + 1)
    if cancelled and cfg.checkpoint_every and losses:
        _save_checkpoint(checkpoint, cfg, len(losses), lens, opt, sched, losses, time.perf_counter() - started)
    elif not cancelled:
        checkpoint.unlink(missing_ok=True)
    return _finish(runtime, lm, lens, cfg, out_dir, heldout, losses, started, cancelled, job)


def _finish(runtime: Runtime, lm, lens, cfg: TrainConfig, out_dir: Path, heldout: list[list[int]],
            losses: list[float], started: float, cancelled: bool, job: Job) -> TrainResult:
    """Save the lens (tuned-lens format), evaluate it on held-out text, write glassbox_training.json."""
    steps_done = len(losses)
    lens.layer_translators.eval()
    job.phase("saving the lens")
    save_lens(lens, out_dir)
    seconds = time.perf_counter() - started
    result = TrainResult(str(out_dir), steps_done, steps_done * cfg.batch_size * cfg.seq_len, seconds, cancelled,
                         losses=list(losses))
    if steps_done:
        job.phase(f"evaluating on {len(heldout)} held-out rows", total=len(heldout), unit="rows")
        others = {f"compare:{p}": load_tuned_lens(runtime, lm, p) for p in (cfg.compare or "").split(",") if p}
        ev = evaluate(lm, {"logit": logit_lens(runtime, lm), "tuned": lens, **others}, heldout, job=job)
        result.per_layer_kl_compare = {name.split(":", 1)[1]: [float(x) for x in ev[name]] for name in others}
        result.heldout_tokens = int(ev["_tokens"][0])
        result.per_layer_kl_logit = [float(x) for x in ev["logit"]]
        result.per_layer_kl_tuned = [float(x) for x in ev["tuned"]]
        result.heldout_kl_logit = float(np.mean(ev["logit"]))
        result.heldout_kl_tuned = float(np.mean(ev["tuned"]))
    (out_dir / "glassbox_training.json").write_text(json.dumps(asdict(result) | {"config": asdict(cfg)}, indent=1))
    return result


def main(argv: list[str] | None = None) -> TrainResult:
    parser = argparse.ArgumentParser(description="Train a tuned lens on the offline corpus (tuned-lens format).")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        kind = type(value) if value is not None else str
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k.replace("-", "_"): v for k, v in vars(args).items()})
    from analysis.runtime import get_runtime

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    result = train_tuned_lens(get_runtime(), cfg, tqdm_job(f"tuned lens {cfg.model_id}"))
    print(f"saved {result.out_dir} ({result.steps_done} steps, {result.tokens_seen} tokens, {result.seconds:.0f} s)")
    if math.isfinite(result.heldout_kl_logit):
        print(f"held-out mean KL to final over {result.heldout_tokens} tokens: "
              f"logit lens {result.heldout_kl_logit:.3f} nats, tuned lens {result.heldout_kl_tuned:.3f} nats")
    return result


if __name__ == "__main__":
    main()
