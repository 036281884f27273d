"""``make sae``: train an SAE on the embedded SmolLM2 with sae-lens's own training runner, offline.

sae-lens trains on the HF model (``model_class_name="AutoModelForCausalLM"``, hook ``model.layers.15``,
the residual stream after block 15) over the built-in offline corpus written as a JSONL folder, then
this module evaluates it through our capture sites (L0, explained variance, loss recovered with the
SAE output spliced in via ``capture(edits=...)``) and writes the metrics next to the SAE as
``glassbox.json``. The SAE is saved in sae-lens's format under ``<cache>/saes/smollm2-l15-res``.

    python -m analysis.sae_train [--tokens 300000] [--d-sae 2304] [--k 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.features_sae import (
    EMBEDDED_SAE,
    EMBEDDED_SAE_LAYER,
    META_FILE,
    embedded_sae_dir,
    evaluate_sae,
    forget_sae,
    load_sae,
)
from analysis.settings import EMBEDDED_LM, Settings, load_settings


@dataclass
class TrainOptions:
    tokens: int = 300_000
    d_sae: int = 2304  # 4x d_model
    k: int = 32  # TopK SAE: L0 is fixed by construction, no L1 sweep needed on a CPU budget
    layer: int = EMBEDDED_SAE_LAYER
    context_size: int = 128
    lr: float = 1e-3
    batch_tokens: int = 512
    eval_docs: int = 24
    corpus_chars: int = 2_500_000
    max_minutes: float = 15.0  # time budget for model load + training; the SAE so far is saved when it is hit


def _write_dataset(settings: Settings, folder: Path, max_chars: int) -> tuple[int, list[str]]:
    """train.jsonl from the offline corpus; returns (n docs, held-out docs for evaluation)."""
    from analysis.corpus import SampleLibrary

    docs = SampleLibrary(settings.samples_dir, max_chars=settings.max_text_chars).training_text(max_chars)
    held_out = docs[-64:]
    train = docs[:-64]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w") as handle:
        for doc in train:
            handle.write(json.dumps({"text": doc}) + "\n")
    return len(train), held_out


def _eval_batches(lm: Any, docs: list[str], n: int, ctx: int) -> list[Any]:
    import torch

    rows = []
    for doc in docs:
        bos = [lm.tokenizer.bos_token_id] if lm.tokenizer.bos_token_id is not None else []
        ids = bos + lm.tokenizer(doc, add_special_tokens=False)["input_ids"]  # BOS first, as in training
        if len(ids) >= ctx:
            rows.append(ids[:ctx])
        if len(rows) >= n:
            break
    return [torch.tensor(rows[i : i + 8]) for i in range(0, len(rows), 8)]


class _Budget(KeyboardInterrupt):
    """Raised by SIGALRM when the training time budget is over (sae-lens treats it as an interrupt)."""


def _run_with_budget(runner: Any, output: Path, max_minutes: float) -> bool:
    """Run sae-lens's runner; when ``max_minutes`` pass, stop and save the SAE trained so far.
    Returns True when the budget was hit."""
    import signal

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise _Budget

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, max_minutes * 60))
    try:
        runner.run()
        return False
    except _Budget:
        print(f"time budget of {max_minutes} min reached: saving the SAE trained so far")
        output.mkdir(parents=True, exist_ok=True)
        runner.sae.save_inference_model(str(output))
        return True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def train_embedded_sae(settings: Settings, options: TrainOptions) -> dict[str, Any]:
    """Train, save (atomically) and evaluate the embedded SAE; returns the metrics dict."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    from analysis.embedded import smollm2_dir

    start = time.time()
    model_dir = smollm2_dir(settings.cache_dir)
    target = embedded_sae_dir(settings.cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sae-train-", dir=target.parent))
    try:
        n_docs, held_out = _write_dataset(settings, work / "data", options.corpus_chars)
        print(f"dataset: {n_docs} documents from the offline corpus -> {work / 'data' / 'train.jsonl'}")
        cfg = LanguageModelSAERunnerConfig(
            model_name=str(model_dir),
            model_class_name="AutoModelForCausalLM",
            model_from_pretrained_kwargs={"dtype": "float32"},  # fp16 checkpoint computed in fp32, as the app does
            hook_name=f"model.layers.{options.layer}",
            dataset_path=str(work / "data"),
            is_dataset_tokenized=False,
            exclude_special_tokens=True,  # BOS/separators: huge-norm attention sinks would dominate the MSE
            streaming=False,
            context_size=options.context_size,
            training_tokens=options.tokens,
            train_batch_size_tokens=options.batch_tokens,
            store_batch_size_prompts=8,
            n_batches_in_buffer=16,
            lr=options.lr,
            lr_warm_up_steps=20,
            device="cpu",
            act_store_device="cpu",
            dtype="float32",
            sae=TopKTrainingSAEConfig(d_in=576, d_sae=options.d_sae, k=options.k),
            logger=LoggingConfig(log_to_wandb=False),
            output_path=str(work / "sae"),
            checkpoint_path=None,  # no checkpoints; a time-budget stop saves the SAE itself
            n_checkpoints=0,
            n_eval_batches=2,
        )
        runner = LanguageModelSAETrainingRunner(cfg)
        budget_hit = _run_with_budget(runner, work / "sae", options.max_minutes)
        train_seconds = time.time() - start
        meta = {
            "model_id": EMBEDDED_LM,
            "hook_name": cfg.hook_name,
            "training_tokens_requested": options.tokens,  # fewer were seen when time_budget_hit
            "d_sae": options.d_sae,
            "k": options.k,
            "context_size": options.context_size,
            "train_seconds": round(train_seconds, 1),
            "time_budget_hit": budget_hit,
            "max_minutes": options.max_minutes,
            "trainer": "sae_lens.LanguageModelSAETrainingRunner (TopK)",
        }
        (work / "sae" / META_FILE).write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work / "sae", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    forget_sae(EMBEDDED_SAE, settings.cache_dir)
    from analysis.runtime import Runtime

    runtime = Runtime(settings)
    lm = runtime.model(EMBEDDED_LM)
    sae = load_sae(EMBEDDED_SAE, settings.cache_dir)
    quality = evaluate_sae(lm, sae, _eval_batches(lm, held_out, options.eval_docs, options.context_size))
    meta.update(quality.as_dict(), total_seconds=round(time.time() - start, 1))
    (target / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    defaults = TrainOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="training tokens")
    parser.add_argument("--d-sae", type=int, default=defaults.d_sae)
    parser.add_argument("--k", type=int, default=defaults.k, help="TopK active features per token")
    parser.add_argument("--layer", type=int, default=defaults.layer)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--max-minutes", type=float, default=defaults.max_minutes,
                        help="time budget for load + training; the SAE so far is saved when it is hit")
    args = parser.parse_args(argv)
    options = TrainOptions(tokens=args.tokens, d_sae=args.d_sae, k=args.k, layer=args.layer, lr=args.lr,
                           max_minutes=args.max_minutes)
    meta = train_embedded_sae(load_settings(), options)
    print(f"saved {embedded_sae_dir(load_settings().cache_dir)}")
    for key in ("n_tokens", "l0", "explained_variance", "ce_clean", "ce_spliced", "ce_zero", "loss_recovered",
                "dead_fraction", "train_seconds", "total_seconds"):
        print(f"{key:>20}: {meta[key]:.4f}" if isinstance(meta[key], float) else f"{key:>20}: {meta[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
