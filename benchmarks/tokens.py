"""Tokens page: server-side time and payload of a token/layer/head change on a 512-token SmolLM2 sample,
beside the time of one forward pass (what DeepPeek-style tools pay when they re-run the model), and the
first paint of a new text (``load_view`` on an uncached ~510-token text) interleaved with a bare forward
of the same ids over 6 texts.

``python -m benchmarks tokens`` -> benchmarks/results/tokens.json. Targets: p95 < 100 ms, < 300 KB, first
paint <= 1.5x the bare forward.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_TOKENS = 512


def _text_of(lm: Any, library: Any, n_tokens: int, skip: int = 0) -> str:
    """Prose from the offline library (from the ``skip``-th sample on), cut to ``n_tokens`` tokens."""
    text = "\n\n".join(s.text for s in library.list("prose")[skip : skip + 12])
    ids = lm.tokenizer(text)["input_ids"][:n_tokens]
    return lm.tokenizer.decode(ids)


def first_paint(lm: Any, runtime: Any, n_texts: int = 6) -> dict[str, Any]:
    """``load_view`` on texts never seen before vs a bare forward of the same ids, interleaved per text."""
    import statistics

    import torch

    from callbacks.tokens import load_view

    paints, bares, ratios = [], [], []
    for i in range(n_texts):
        text = _text_of(lm, runtime.samples, 510, skip=12 + 3 * i)
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        start = time.perf_counter()
        with torch.inference_mode():
            lm.model(ids, use_cache=False)
        bare = time.perf_counter() - start
        start = time.perf_counter()
        load_view(lm.model_id, ["user"], text)  # each text is new: nothing of it is cached
        paint = time.perf_counter() - start
        bares.append(bare)
        paints.append(paint)
        ratios.append(paint / bare)
    return {"n_texts": n_texts, "paint_s": paints, "bare_forward_s": bares, "ratios": ratios,
            "paint_median_s": statistics.median(paints), "bare_median_s": statistics.median(bares),
            "ratio_median": statistics.median(ratios), "target_ratio": 1.5}


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    import torch
    from dash._utils import to_json

    from analysis.capture import run_text
    from analysis.runtime import Runtime, set_runtime
    from analysis.settings import EMBEDDED_LM, load_settings
    from analysis.tokens.views import page_kinds, page_sites
    from benchmarks.common import summary, timed, write_result

    runtime = set_runtime(Runtime(load_settings()))
    import callbacks.tokens as handlers

    lm = runtime.model(EMBEDDED_LM)
    text = _text_of(lm, runtime.samples, N_TOKENS)
    n = len(lm.tokenizer(text)["input_ids"])
    sites = page_sites(runtime, lm, page_kinds(lm.info, n, runtime.settings.run_cache_bytes // 2))
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])

    def plain_forward() -> None:
        with torch.inference_mode():
            lm.model(ids, use_cache=False)

    forward = summary(timed(plain_forward, repeats=3, warmup=1))
    capture = summary(timed(lambda: run_text(lm, text, sites, max_tokens=2048), repeats=5, warmup=1))
    paint_first = first_paint(lm, runtime)
    states = [EMBEDDED_LM, ["user"], text]
    load_s, out = _time(lambda: handlers.load_samples(*states, "attention"))
    meta = out[1]
    strip_bytes = len(to_json(list(out[:2])).encode())  # sent once per model+text
    count = lm.forward_count
    rng = random.Random(0)

    def interaction(sel: dict, tool: str, layer: int, head: int, mean: bool, rope: str = "full",
                    tab: str = "token") -> tuple[float, int]:
        """One UI change = the paint and the visible panel callback; seconds and bytes sent."""
        args = [tool, "hook_resid_post", layer, head, mean, "from", rope, "tokens", 7, "none"]
        t0 = time.perf_counter()
        paint = handlers.paint(meta, sel, *args, *states)
        panel = handlers.panel(meta, sel, tab, "hook_resid_post", layer, "none", 7, "", *states, head, mean, rope)
        dt = time.perf_counter() - t0
        return dt, len(to_json([paint, panel]).encode())

    interaction({"s": 0, "i": 1}, "attention", 0, 0, False)  # warm the per-run memo
    results: dict[str, dict[str, Any]] = {}
    cases = {
        "token change (attention, head)": lambda: interaction({"s": 0, "i": rng.randrange(n)}, "attention",
                                                               rng.randrange(30), 3, False),
        "token change (attention, mean of heads, opposite)": lambda: interaction(
            {"s": 0, "i": rng.randrange(n)}, "attention", 5, 0, True),
        "layer change (attention)": lambda: interaction({"s": 0, "i": 200}, "attention", rng.randrange(30), 2, False),
        "head change (attention, RoPE not applied)": lambda: interaction(
            {"s": 0, "i": 200}, "attention", 12, rng.randrange(9), False, "not_applied"),
        "layer change (similarity)": lambda: interaction({"s": 0, "i": 100}, "similarity", rng.randrange(30), 0, False),
        "token change (predictions)": lambda: interaction({"s": 0, "i": rng.randrange(n)}, "predictions", 0, 0, False),
        "layer change (histogram tab)": lambda: interaction({"s": 0, "i": 100}, "sum", rng.randrange(30), 0, False,
                                                             tab="hist"),
        "layer change (scatter tab)": lambda: interaction({"s": 0, "i": 100}, "sum", rng.randrange(30), 0, False,
                                                           tab="scatter"),
    }
    for name, fn in cases.items():
        times, sizes = [], []
        for _ in range(40):
            dt, size = fn()
            times.append(dt)
            sizes.append(size)
        s = summary(times)
        results[name] = {**s, "payload_bytes_max": max(sizes), "payload_bytes_median": sorted(sizes)[len(sizes) // 2]}
    assert lm.forward_count == count, "an interaction re-ran the model"
    fwd = forward["median_s"]
    print(f"\n512-token SmolLM2 sample ({n} tokens), {torch.get_num_threads()} threads")
    print(f"one forward pass (no hooks):        {fwd * 1000:8.0f} ms")
    print(f"one forward with the page's capture: {capture['median_s'] * 1000:8.0f} ms (median of 5)")
    print(f"first paint of a new ~510-token text: {paint_first['paint_median_s'] * 1000:8.0f} ms vs bare "
          f"{paint_first['bare_median_s'] * 1000:.0f} ms: median ratio {paint_first['ratio_median']:.2f}x "
          f"(range {min(paint_first['ratios']):.2f}-{max(paint_first['ratios']):.2f}x over {paint_first['n_texts']} "
          "texts, target <= 1.5x)")
    print(f"strip structure (once per model+text): {strip_bytes / 1000:.1f} KB")
    print(f"{'interaction':52s} {'p50 ms':>8s} {'p95 ms':>8s} {'fwd/p95':>8s} {'max KB':>8s}")
    for name, r in results.items():
        print(f"{name:52s} {r['median_s'] * 1000:8.1f} {r['p95_s'] * 1000:8.1f} {fwd / r['p95_s']:8.0f}x "
              f"{r['payload_bytes_max'] / 1000:8.1f}")
    write_result("tokens", {
        "n_tokens": n, "model": EMBEDDED_LM, "threads": torch.get_num_threads(),
        "forward_plain": forward, "forward_with_capture": capture, "first_load_s": load_s, "first_paint": paint_first,
        "interactions": results, "strip_payload_bytes_once_per_text": strip_bytes, "forwards_during_interactions": lm.forward_count - count,
        "targets": {"p95_s": 0.1, "payload_bytes": 300_000},
        "all_within_targets": all(r["p95_s"] < 0.1 and r["payload_bytes_max"] < 300_000 for r in results.values()),
    })


if __name__ == "__main__":
    main()
