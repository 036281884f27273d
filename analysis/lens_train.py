"""Train a tuned lens on the built-in offline corpus (``make lens``; the page's Train button).

tuned-lens's ``TunedLens`` module and its objective: for every layer l, KL(final || lens_l) at the
same position (``shift 0``), backpropagated one layer at a time, gradient clipping at 1.0, weight
decay, linear LR schedule with warm-up — as in ``tuned_lens.scripts.train_loop.Train.execute``.
That script itself cannot run here (its data pipeline needs ``torchdata.dataloader2``, removed from
torchdata, and it expects a hub dataset), so this loop feeds it from ``runtime.samples.training_text``.
Two deliberate differences for 2 CPU cores: Adam (tuned-lens's ``--optimizer adam`` option) with a
few hundred tokens per step instead of 2^18, and float32 instead of bf16 autocast (bf16 matmuls are
~10x slower than float32 on CPUs without AVX512-BF16).

CLI: ``python -m analysis.lens_train [--model ID] [--steps N] [--out DIR] ...`` (tqdm progress).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.lens import compute_stats, lens_sites
from analysis.lens_lenses import fresh_tuned_lens, logit_lens, save_lens, trained_lens_dir
from analysis.settings import EMBEDDED_LM

Progress = Callable[[int, int, float], None]


@dataclass
class TrainConfig:
    """Budget and optimiser of one training run (the defaults finish in ~10-15 min on 2 cores)."""

    model_id: str = EMBEDDED_LM
    steps: int = 48
    seq_len: int = 128
    batch_size: int = 1
    lr: float = 2e-3
    warmup_steps: int = 5
    weight_decay: float = 1e-3
    train_chars: int = 120_000
    heldout_texts: int = 4
    save_every: int = 0  # also save + evaluate every N steps (0 = only at the end)
    out: str | None = None
    seed: int = 0


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
    losses: list[float] = field(default_factory=list)


def _token_blocks(tokenizer, docs: list[str], seq_len: int) -> torch.Tensor:
    """Concatenate documents (EOS between them) and cut into [N, seq_len] blocks."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
    n = len(ids) // seq_len
    if n == 0:
        raise InputError(f"The training text has only {len(ids)} tokens; need at least seq_len={seq_len}.")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def split_corpus(runtime, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """Training documents and disjoint held-out documents from the offline corpus."""
    docs = runtime.samples.training_text(cfg.train_chars)
    if len(docs) <= cfg.heldout_texts:
        raise InputError(f"The offline corpus gave {len(docs)} documents; need more than {cfg.heldout_texts}.")
    return docs[: -cfg.heldout_texts], docs[-cfg.heldout_texts :]


def evaluate(runtime, lm, lenses: dict[str, object], texts: list[str], max_tokens: int = 128) -> dict[str, np.ndarray]:
    """Mean KL to final per layer (rows without the output row) for each lens over ``texts``."""
    sums = {name: np.zeros(lm.info.n_layers) for name in lenses}
    count = 0
    sites = lens_sites(lm.info.n_layers)
    for text in texts:
        ids = lm.tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
        cap = capture(lm, torch.tensor([ids]), [s for s in sites if "resid_pre" in s])
        from analysis.capture import Run

        run = Run(lm.info.model_id, text, ids, [""] * len(ids), cap.logits[0].float(),
                  {k: v[0] for k, v in cap.acts.items()})
        for name, lens in lenses.items():
            stats = compute_stats(lm, run, lens, "resid", 0, len(ids))
            sums[name] += stats.kl_final[:-1].sum(axis=1)
        count += len(ids)
    return {name: s / max(count, 1) for name, s in sums.items()} | {"_tokens": np.array([count])}


def train_tuned_lens(
    runtime,
    cfg: TrainConfig,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train, save in tuned-lens format, and evaluate on held-out text. Shared by CLI and page."""
    torch.manual_seed(cfg.seed)
    lm = runtime.model(cfg.model_id)
    if not lm.info.is_causal or lm.tokenizer is None:
        raise InputError(f"Training a tuned lens needs a causal LM with a tokenizer; {cfg.model_id} is not one.")
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.seq_len < 8:
        raise InputError("steps and batch_size must be >= 1 and seq_len >= 8.")
    train_docs, heldout = split_corpus(runtime, cfg)
    blocks = _token_blocks(lm.tokenizer, train_docs, cfg.seq_len)
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(cfg.seed))
    lens = fresh_tuned_lens(lm)
    lens.layer_translators.train()  # not lens.train(): the unembed is the model's own (shared) norm and head
    params = [p for p in lens.parameters() if p.requires_grad]
    # tuned-lens's Optimizer(optimizer=adam): Adam(amsgrad=True, betas=(0.9, 0.999)), linear schedule with warm-up.
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), amsgrad=True, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, cfg.steps)
    sites = [f"blocks.{i}.hook_resid_pre" for i in range(lm.info.n_layers)]
    weight, bias = lens.unembed.unembedding.weight, lens.unembed.unembedding.bias
    out_dir = Path(cfg.out) if cfg.out else trained_lens_dir(runtime.settings, cfg.model_id)
    started = time.perf_counter()
    losses: list[float] = []
    step = 0
    cancelled = False
    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        idx = order[(torch.arange(cfg.batch_size) + step * cfg.batch_size) % len(blocks)]
        batch = blocks[idx]
        cap = capture(lm, batch, sites)
        # tuned-lens's loss, KL(final || lens) = sum p_f log p_f - sum p_f z + logsumexp(z), rearranged:
        # with z = norm(h') W^T, sum p_f z = norm(h') . (p_f W), so the p_f terms need no vocab-sized
        # pass per layer (same value and gradient, ~2x less elementwise work on CPU).
        with torch.no_grad():
            logp_f = cap.logits.float().log_softmax(-1)
            p_f = logp_f.exp()
            neg_h = torch.linalg.vecdot(p_f, logp_f)
            u = p_f @ weight.float()
            if bias is not None:  # sum p_f z also has p_f . b (constant in the lens's parameters)
                neg_h = neg_h - p_f @ bias.float()
            del logp_f, p_f
        total = 0.0
        for i, site in enumerate(sites):
            h = cap.acts[site].clone()  # inference tensor -> a normal one autograd may save
            z_in = lens.unembed.final_norm(lens.transform_hidden(h, i))
            logits = lens.unembed.unembedding(z_in)
            kl = neg_h - torch.linalg.vecdot(z_in, u) + torch.logsumexp(logits, dim=-1)
            loss = kl.mean()
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        sched.step()
        losses.append(total / len(sites))
        if progress is not None:
            progress(step + 1, cfg.steps, losses[-1])
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _finish(runtime, lm, lens, cfg, out_dir, heldout, losses, started, cancelled)
            lens.layer_translators.train()
    return _finish(runtime, lm, lens, cfg, out_dir, heldout, losses, started, cancelled)


def _finish(runtime, lm, lens, cfg: TrainConfig, out_dir: Path, heldout: list[str], losses: list[float],
            started: float, cancelled: bool) -> TrainResult:
    """Save the lens (tuned-lens format), evaluate it on held-out text, write glassbox_training.json."""
    steps_done = len(losses)
    lens.layer_translators.eval()
    save_lens(lens, out_dir)
    seconds = time.perf_counter() - started
    result = TrainResult(str(out_dir), steps_done, steps_done * cfg.batch_size * cfg.seq_len, seconds, cancelled,
                         losses=list(losses))
    if steps_done:
        ev = evaluate(runtime, lm, {"logit": logit_lens(lm), "tuned": lens}, heldout, max_tokens=cfg.seq_len)
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
    from tqdm.auto import tqdm

    from analysis.runtime import get_runtime

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    bar = tqdm(total=cfg.steps, desc=f"tuned lens {cfg.model_id}", unit="step")

    def report(done: int, total: int, loss: float) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(kl=f"{loss:.3f}")

    result = train_tuned_lens(get_runtime(), cfg, progress=report)
    bar.close()
    print(f"saved {result.out_dir} ({result.steps_done} steps, {result.tokens_seen} tokens, {result.seconds:.0f} s)")
    if math.isfinite(result.heldout_kl_logit):
        print(f"held-out mean KL to final over {result.heldout_tokens} tokens: "
              f"logit lens {result.heldout_kl_logit:.3f} nats, tuned lens {result.heldout_kl_tuned:.3f} nats")
    return result


if __name__ == "__main__":
    main()
