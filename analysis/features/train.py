"""``make sae``: train the embedded SmolLM2's SAE with sae-lens, over a disk cache of activations.

Two phases, both resumable:

1. **Activation cache.** The training corpus (:mod:`analysis.corpus.training`) is packed into rows of
   ``seq_len`` tokens (:data:`analysis.io.RUN_LIKE`: rows start as a run of a text would, documents
   separated by EOS) and run through the model up to the SAE's layer (``capture(stop_early=True)``). The
   residual stream after block ``layer`` (``blocks.{layer}.hook_resid_post``) of every position but the
   first (an attention sink with a ~100x norm) is written as fp16 chunks of ``chunk_rows`` rows
   (``chunk-00000.npy`` ...). A chunk is written atomically, so a stopped run resumes at the first
   missing chunk; the manifest pins the corpus and model so a changed corpus never mixes in.
2. **Training.** sae-lens's own ``BatchTopKTrainingSAE`` and ``SAETrainer`` (its Adam, LR schedule,
   dead-feature AuxK loss, activation norm scaling) are fed shuffled batches of the cached activations
   for ``epochs`` passes; sae-lens saves it as a JumpReLU SAE (its inference form of BatchTopK). BatchTopK
   over TopK: the same average L0 with a per-token budget (simple tokens use fewer features), which
   reconstructs better at the same L0; the threshold keeps inference deterministic per token.

The SAE is then evaluated on held-out documents (never cached or trained on) through our capture sites:
L0, explained variance, CE loss with the SAE spliced in vs clean vs zero-ablated, dead features; saved
fp16 in sae-lens format with ``glassbox.json`` (options, corpus, wall times, held-out figures).

    python -m analysis.features.train [--tokens 2000000] [--epochs 5] [--d-sae 3072] [--k 48] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.features.sae import (
    EMBEDDED_SAE_LAYER,
    META_FILE,
    SAEQuality,
    evaluate_sae,
    load_sae,
    trained_sae_dir,
)
from analysis.io import RUN_LIKE, pack_rows
from analysis.jobs import Job, quiet_job, tqdm_job
from analysis.models import LoadedModel
from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM, load_settings

CACHE_VERSION = 1
# Massive activations (Sun et al. 2024): ~1 token in 10,000 (a '\n', '0', '────' in certain contexts) has a
# residual norm ~150x the median and alone holds ~75% of the variance; like BOS they are left out of training
# and evaluation (and the Features page marks them), else the SAE spends itself reconstructing them.
MASSIVE_NORM_FACTOR = 10.0


@dataclass
class SAETrainOptions:
    """Budget and architecture of one training run (the defaults made the shipped SAE)."""

    model_id: str = EMBEDDED_LM
    layer: int = EMBEDDED_SAE_LAYER
    tokens: int = 2_400_000  # activations cached and trained on (position 0 of each row excluded)
    epochs: int = 6
    d_sae: int = 3072
    k: float = 56.0  # BatchTopK: average active features per token
    seq_len: int = 256
    lr: float = 4e-4
    batch_tokens: int = 4096
    warmup_steps: int = 200
    aux_coefficient: float = 1.0 / 32  # AuxK loss weight (Gao et al. 2024)
    dead_window: int = 100  # steps without firing before a feature counts as dead (AuxK then trains it)
    heldout_rows: int = 400  # ~100k held-out tokens for L0 / explained variance / dead features
    heldout_ce_rows: int = 48  # of which these also score CE clean / spliced / zero-ablated
    chunk_rows: int = 64
    capture_batch: int = 8
    seed: int = 0
    out: str | None = None  # default: <cache>/saes/smollm2-l15-res (the shipped one: analysis/artifacts/...)
    cache: str | None = None  # default: <cache>/sae-activations/<model>-l<layer>


def _site(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def training_rows(lm: LoadedModel, options: SAETrainOptions) -> tuple[list[list[int]], list[list[int]], dict]:
    """(training rows, held-out rows, corpus facts): rows of ``seq_len`` tokens packed from the corpus."""
    from analysis.corpus.training import training_corpus

    per_row = options.seq_len - 1
    n_rows = math.ceil(options.tokens / per_row)
    corpus = training_corpus(max_chars=int(options.tokens * 5.5), heldout_chars=options.heldout_rows * options.seq_len * 6)
    train = pack_rows(lm.tokenizer, corpus.train, n_rows * options.seq_len, options.seq_len, RUN_LIKE)
    train = [r for r in train if len(r) == options.seq_len][:n_rows]
    if len(train) < n_rows:
        raise InputError(f"The offline corpus gave {len(train) * per_row:,} tokens; {options.tokens:,} were asked for.")
    heldout = pack_rows(lm.tokenizer, corpus.heldout, options.heldout_rows * options.seq_len, options.seq_len, RUN_LIKE)
    heldout = [r for r in heldout if len(r) == options.seq_len]
    facts = {"train_documents": len(corpus.train), "heldout_documents": len(corpus.heldout),
             "chars_by_source": corpus.chars_by_source, "heldout_rows": len(heldout)}
    return train, heldout, facts


def _digest(rows: list[list[int]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for row in rows:
        h.update(np.asarray(row, dtype=np.int32).tobytes())
    return h.hexdigest()[:16]


def cache_activations(lm: LoadedModel, rows: list[list[int]], site: str, directory: Path, chunk_rows: int = 64,
                      batch: int = 8, job: Job | None = None) -> list[Path]:
    """fp16 activations at ``site`` of every row's positions 1.., in atomic chunk files; resumes (a cancel
    stops after the current chunk: what is written stays)."""
    job = job or quiet_job()
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"version": CACHE_VERSION, "model_id": lm.model_id, "site": site, "rows": len(rows),
                "seq_len": len(rows[0]), "chunk_rows": chunk_rows, "rows_digest": _digest(rows), "skip_first": 1}
    path = directory / "manifest.json"
    if path.is_file() and json.loads(path.read_text()) != manifest:
        shutil.rmtree(directory)
        directory.mkdir(parents=True)
    path.write_text(json.dumps(manifest, indent=1))
    n_chunks = math.ceil(len(rows) / chunk_rows)
    files = [directory / f"chunk-{i:05d}.npy" for i in range(n_chunks)]
    done = sum(f.is_file() for f in files)
    job.phase(f"caching activations at {site}", total=n_chunks, unit="chunks", done=done)
    for i, file in enumerate(files):
        if file.is_file():
            continue
        if job.should_stop():
            break
        part = rows[i * chunk_rows : (i + 1) * chunk_rows]
        out = []
        for start in range(0, len(part), batch):
            ids = torch.tensor(part[start : start + batch])
            acts = capture(lm, ids, [site], logits=False, stop_early=True).acts[site]
            out.append(acts[:, 1:].reshape(-1, acts.shape[-1]).to(torch.float16).cpu().numpy())
        tmp = file.with_suffix(".tmp.npy")
        np.save(tmp, np.concatenate(out))
        os.replace(tmp, file)
        done += 1
        job.update(done)
    return [f for f in files if f.is_file()]


def load_cache(files: list[Path], norm_factor: float = MASSIVE_NORM_FACTOR) -> tuple[torch.Tensor, float, int]:
    """The cached activations as one fp16 tensor [N, d] (2M x 576 = 2.3 GB) without the massive-activation
    tokens, the norm bound used (``norm_factor`` x the median norm) and how many tokens it dropped."""
    acts = np.concatenate([np.load(f) for f in files])
    norms = np.linalg.norm(acts.astype(np.float32), axis=1)
    bound = float(norm_factor * np.median(norms))
    keep = norms <= bound
    return torch.from_numpy(acts[keep]), bound, int((~keep).sum())


def shuffled_batches(acts: torch.Tensor, batch: int, epochs: int, seed: int) -> Iterator[torch.Tensor]:
    """float32 batches of ``batch`` rows, a fresh permutation every epoch (an endless iterator after that)."""
    generator = torch.Generator().manual_seed(seed)
    epoch = 0
    while True:
        order = torch.randperm(acts.shape[0], generator=generator)
        for start in range(0, acts.shape[0] - batch + 1, batch):
            yield acts[order[start : start + batch]].float()
        epoch += 1
        if epoch >= epochs:
            epoch = 0  # sae-lens stops by its sample count; this only guards a last partial step


def train_sae(acts: torch.Tensor, options: SAETrainOptions, job: Job | None = None) -> Any:
    """sae-lens's BatchTopK SAE trained by its SAETrainer on the cached activations."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(options.seed)
    d_in = acts.shape[1]
    cfg = BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=options.d_sae, k=options.k,
                                     aux_loss_coefficient=options.aux_coefficient,
                                     normalize_activations="expected_average_only_in", dtype="float32", device="cpu")
    cfg.metadata.model_name = "HuggingFaceTB/SmolLM2-135M-Instruct"
    cfg.metadata.hook_name = _site(options.layer)
    cfg.metadata.context_size = options.seq_len
    cfg.metadata.prepend_bos = False
    sae = BatchTopKTrainingSAE(cfg)
    total = acts.shape[0] * options.epochs
    steps = total // options.batch_tokens
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total, train_batch_size_samples=options.batch_tokens, lr=options.lr,
        lr_end=options.lr / 10, lr_scheduler_name="cosineannealing", lr_warm_up_steps=options.warmup_steps,
        lr_decay_steps=max(1, steps - options.warmup_steps), device="cpu", autocast=False,
        dead_feature_window=options.dead_window, feature_sampling_window=max(200, steps // 10),
        logger=LoggingConfig(log_to_wandb=False),
    )
    data = shuffled_batches(acts, options.batch_tokens, options.epochs, options.seed)
    job = job or quiet_job()
    job.phase(f"training ({options.epochs} epochs of {acts.shape[0]:,} tokens)", total=steps, unit="steps")

    class _Reported:
        """The data provider, reporting the step count (sae-lens pulls one batch per step)."""

        def __init__(self, inner: Iterator[torch.Tensor]) -> None:
            self.inner, self.n = inner, 0

        def __iter__(self) -> _Reported:
            return self

        def __next__(self) -> torch.Tensor:
            job.check()
            self.n += 1
            if self.n % 10 == 0:
                job.update(min(self.n, steps))
            return next(self.inner)

    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_Reported(data))
    # Start at the data (Anthropic's and Gao et al.'s init): b_dec = the mean activation, so the encoder sees
    # centred inputs from step one; the residual stream's mean is ~0.7 of a typical token's norm here, and
    # from b_dec = 0 most features first learn that one direction and die. The norm factor is sae-lens's own
    # ``expected_average_only_in`` estimate (sqrt(d_in) / mean norm), set before fit() so fit() keeps it.
    sample = acts[torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(options.seed))[:200_000]].float()
    factor = float(math.sqrt(d_in) / sample.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = factor
    with torch.no_grad():
        sae.b_dec.copy_(sample.mean(0) * factor)
    trainer.fit()
    return trainer


def heldout_batches(rows: list[list[int]], batch: int = 8) -> list[torch.Tensor]:
    return [torch.tensor(rows[i : i + batch]) for i in range(0, len(rows), batch)]


def save_sae(trainer: Any, out: Path, meta: dict[str, Any]) -> Path:
    """sae-lens inference format (JumpReLU), fp16, with sparsity and glassbox.json; atomic replace."""
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.sae.save_inference_model(str(tmp))
    weights = tmp / "sae_weights.safetensors"
    save_file({k: v.to(torch.float16).contiguous() for k, v in load_file(str(weights)).items()}, str(weights))
    cfg = json.loads((tmp / "cfg.json").read_text())
    cfg["dtype"] = "float16"
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    save_file({"sparsity": trainer.log_feature_sparsity.to(torch.float16)}, str(tmp / "sparsity.safetensors"))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def run(runtime: Runtime, options: SAETrainOptions, job: Job | None = None) -> dict[str, Any]:
    """Cache (resuming), train, evaluate, save. Returns the metadata written to glassbox.json.

    A cancel while caching keeps the chunks written so far (the next run resumes there); a cancel while
    training discards the half-trained SAE."""
    job = job or quiet_job()
    started = time.time()
    settings = runtime.settings
    lm = runtime.model(options.model_id, job)
    site = _site(options.layer)
    job.phase("packing the training corpus")
    train_rows, heldout_rows, facts = training_rows(lm, options)
    cache_dir = Path(options.cache or settings.cache_path / "sae-activations" / f"smollm2-l{options.layer}")
    t0 = time.time()
    files = cache_activations(lm, train_rows, site, cache_dir, options.chunk_rows, options.capture_batch, job)
    cache_seconds = time.time() - t0
    if len(files) < math.ceil(len(train_rows) / options.chunk_rows):
        job.check()
        return {"status": "stopped", "chunks": len(files)}
    job.phase("loading the activation cache")
    acts, max_norm, n_massive = load_cache(files)
    t1 = time.time()
    trainer = train_sae(acts, options, job)
    train_seconds = time.time() - t1
    out = Path(options.out) if options.out else trained_sae_dir(settings.cache_dir)
    meta: dict[str, Any] = {
        "model_id": options.model_id, "hook_name": site, "architecture": "BatchTopK (saved as JumpReLU)",
        "trainer": "sae_lens.SAETrainer + BatchTopKTrainingSAE", "sae_lens_version": _sae_lens_version(),
        "options": asdict(options) | {"out": None, "cache": None}, "corpus": facts,
        "tokens_trained": int(acts.shape[0]), "massive_tokens_excluded": n_massive, "max_norm": round(max_norm, 2),
        "cache_seconds": round(cache_seconds, 1), "train_seconds": round(train_seconds, 1), "command": "make sae",
    }
    job.phase("saving the SAE (sae-lens format, fp16)")
    save_sae(trainer, out, meta)
    sae = load_sae(runtime, str(out), options.model_id, lm.device)
    job.phase(f"evaluating on {len(heldout_rows)} held-out rows", total=len(heldout_rows), unit="rows")
    quality: SAEQuality = evaluate_sae(lm, sae, heldout_batches(heldout_rows), skip_first=1, max_norm=max_norm,
                                       ce_batches=math.ceil(options.heldout_ce_rows / 8))
    meta["heldout"] = quality.as_dict()
    meta["total_seconds"] = round(time.time() - started, 1)
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    runtime.memo("features-sae").clear()  # the next load reads the new weights and figures
    return meta


def _sae_lens_version() -> str:
    from importlib.metadata import version

    return version("sae-lens")


def main(argv: list[str] | None = None) -> int:
    defaults = SAETrainOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(defaults).items():
        kind = type(value) if value is not None else str
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    options = SAETrainOptions(**vars(args))
    from analysis.runtime import Runtime

    meta = run(Runtime(load_settings()), options, tqdm_job("make sae"))
    print(json.dumps({k: meta.get(k) for k in ("heldout", "tokens_trained", "cache_seconds", "train_seconds",
                                                "total_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
