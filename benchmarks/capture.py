"""Full capture (every site of every layer) vs the bare HF forward pass, SmolLM2, 512 tokens.

Both run on the same loaded model (eager attention), interleaved, median of repeats; the ratio is
the cost of our hooks and derived sites. Target: <= 1.25x.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from analysis.capture import capture, run_text
from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM, load_settings
from analysis.sites import arch_for, available_sites
from benchmarks.common import interleaved, write_result

N_TOKENS = 512
REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))


def sample_ids(runtime: Runtime, tokenizer, n_tokens: int) -> torch.Tensor:
    text = "\n\n".join(runtime.samples.training_text(60_000, sources=("prose",)))
    ids = tokenizer(text)["input_ids"][:n_tokens]
    assert len(ids) == n_tokens, "not enough offline prose for the benchmark"
    return torch.tensor([ids])


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runtime = Runtime(load_settings())
    lm = runtime.model(EMBEDDED_LM)
    ids = sample_ids(runtime, lm.tokenizer, N_TOKENS)
    sites = available_sites(arch_for(lm.model), lm.info.n_layers)

    def bare() -> None:
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False)

    def full() -> None:
        capture(lm, ids, "all")

    bare_times, full_times = interleaved(bare, full, REPEATS)
    text = lm.tokenizer.decode(ids[0])
    start = time.perf_counter()
    run = run_text(lm, text, "all", max_tokens=2048)
    run_s = time.perf_counter() - start
    bare_med, full_med = statistics.median(bare_times), statistics.median(full_times)
    ratio = full_med / bare_med
    print(f"SmolLM2-135M, {N_TOKENS} tokens, {len(sites)} sites, {REPEATS} repeats, {torch.get_num_threads()} threads")
    print(f"  bare HF forward      median {bare_med * 1000:8.1f} ms")
    print(f"  full capture         median {full_med * 1000:8.1f} ms   ratio {ratio:.3f}x (target <= 1.25x)")
    print(f"  run_text('all') once        {run_s * 1000:8.1f} ms   ({run.nbytes / 1024**2:.0f} MB captured)")
    write_result("capture", {
        "model": EMBEDDED_LM, "n_tokens": N_TOKENS, "n_sites": len(sites), "repeats": REPEATS,
        "bare_forward_s": bare_times, "full_capture_s": full_times,
        "bare_median_s": bare_med, "full_median_s": full_med, "ratio": ratio, "target_ratio": 1.25,
        "run_text_all_s": run_s, "run_bytes": run.nbytes,
    })


if __name__ == "__main__":
    main()
