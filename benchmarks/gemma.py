"""Gemma 3 270M (the embedded one): full capture vs the bare HF forward, and one logit-lens grid vs its floor.

- capture: every site of all 18 layers on 512 tokens against ``model(input_ids)``, interleaved, medians;
- lens: the logit-lens grid (19 rows x 128 positions, five statistics + top-10 over the 262,144-token
  vocabulary, streamed in vocabulary slices) against the floor, one bare float32 unembedding matmul of the
  same shape, and the time per grid.

``python -m benchmarks gemma`` -> benchmarks/results/gemma.json. Targets: capture <= 1.25x, grid <= 1.5x floor.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N_TOKENS = 512
LENS_TOKENS = 128
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def main() -> None:
    import torch

    from analysis.capture import capture
    from analysis.lens.grid import compute_stats, lens_run
    from analysis.lens.lenses import logit_lens
    from analysis.runtime import Runtime, set_runtime
    from analysis.settings import EMBEDDED_GEMMA, load_settings
    from analysis.sites import arch_for, available_sites
    from benchmarks.capture import sample_ids
    from benchmarks.common import interleaved, write_result

    runtime = set_runtime(Runtime(load_settings()))
    lm = runtime.model(EMBEDDED_GEMMA)
    ids = sample_ids(runtime, lm.tokenizer, N_TOKENS)
    sites = available_sites(arch_for(lm.model), lm.info.n_layers)

    def bare() -> None:
        with torch.inference_mode():
            lm.model(input_ids=ids, use_cache=False)

    bare_times, full_times = interleaved(bare, lambda: capture(lm, ids, "all"), REPEATS)
    bare_med, full_med = statistics.median(bare_times), statistics.median(full_times)

    text = lm.tokenizer.decode(ids[0, 1:LENS_TOKENS + 1])
    _, run = lens_run(runtime, EMBEDDED_GEMMA, text)
    lens = logit_lens(runtime, lm)
    grid_times = []
    for _ in range(3):
        start = time.perf_counter()
        stats = compute_stats(lm, run, lens, "resid", 0, run.n_tokens)
        grid_times.append(time.perf_counter() - start)
    assert stats.entropy.shape == (lm.info.n_layers + 1, run.n_tokens)
    weight = lm.model.get_output_embeddings().weight.detach().float()
    rows = torch.randn((lm.info.n_layers + 1) * run.n_tokens, lm.info.d_model)
    floor_times = []
    with torch.inference_mode():
        for _ in range(3):
            start = time.perf_counter()
            logits = rows @ weight.T
            floor_times.append(time.perf_counter() - start)
            del logits
    grid_med, floor_med = statistics.median(grid_times), statistics.median(floor_times)
    print(f"Gemma 3 270M, {N_TOKENS} tokens, {len(sites)} sites, {REPEATS} repeats, {torch.get_num_threads()} threads")
    print(f"  bare HF forward      median {bare_med * 1000:8.1f} ms")
    print(f"  full capture         median {full_med * 1000:8.1f} ms   ratio {full_med / bare_med:.3f}x (target <= 1.25x)")
    print(f"  logit-lens grid ({lm.info.n_layers + 1} x {run.n_tokens}, vocab {lm.info.vocab_size:,}) "
          f"median {grid_med:.2f} s vs floor matmul {floor_med:.2f} s = {grid_med / floor_med:.2f}x")
    write_result("gemma", {
        "model": EMBEDDED_GEMMA, "n_tokens": N_TOKENS, "n_sites": len(sites), "repeats": REPEATS,
        "bare_forward_s": bare_times, "full_capture_s": full_times, "bare_median_s": bare_med,
        "full_median_s": full_med, "capture_ratio": full_med / bare_med, "lens_tokens": run.n_tokens,
        "lens_grid_s": grid_times, "floor_matmul_s": floor_times, "lens_grid_median_s": grid_med,
        "floor_median_s": floor_med, "grid_over_floor": grid_med / floor_med,
        "targets": {"capture_ratio": "<= 1.25", "grid_over_floor": "<= 1.5"},
    })


if __name__ == "__main__":
    main()
