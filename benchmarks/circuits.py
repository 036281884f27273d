"""Circuits benchmark, side by side in one run on the embedded SmolLM2, 128- and 512-token prompts:

1. DLA: Glassbox (one hooked HF forward + attribution) vs TransformerLens (``run_with_cache`` +
   ``stack_head_results`` + ``logit_attrs`` on a HookedTransformer of the same weights; its conversion
   is not timed): time and peak working memory.
2. Patching: the grid's own path (one corrupted pass kept, then batches of nearby positions per layer that
   start at their layer and first position) vs one plain HF forward with one hook per cell, on the same
   cells (all 30 layers x a set of positions); and ``patching_grid`` itself over every layer x every
   position (ROME noise on positions 1-3, the clean run included) against the per-cell rate measured on
   the subset times the full grid's cell count (every per-cell forward is the same full pass).
3. Contribution graph: the streamed kernel vs LLM-TT's full per-layer materialisation ([T, T, H, d] and
   ``get_contributions`` written out as LLM-TT does), time and peak working memory for one layer; the
   whole graph (30 layers) for ours.

Each measurement runs in its own subprocess; "peak working memory" is the peak RSS sampled every 2 ms
during the measured call minus the RSS just before it. ``python -m benchmarks circuits`` ->
benchmarks/results/circuits.json. Targets: patching >= 3x faster than one forward per cell; graph peak
working memory <= 1/10 of the full materialisation at 512 tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LENGTHS = (128, 512)
FULL_GRID_LENGTHS = (128,)  # the whole 30 x 512 grid is ~440 TFLOP: hours on 2 CPU cores
PATCH_POSITIONS = {128: 8, 512: 3}  # positions patched per length (x 30 layers); the per-cell side is slow
DENSE_LIMIT_BYTES = 14 << 30  # the dense side's address-space cap (it needs ~3 x T^2 H d x 4 bytes)


def _measure(fn: Callable[[], Any]) -> dict[str, float]:
    """Seconds and peak RSS increase (MB) of one call, RSS sampled every 2 ms by a thread."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return {"seconds": seconds, "peak_mb": (peak[0] - base) / 2**20}


def _prompt(lm: Any, runtime: Any, n_tokens: int) -> str:
    text = "\n\n".join(s.text for s in runtime.samples.list("prose")[:12])
    return lm.tokenizer.decode(lm.tokenizer(text)["input_ids"][:n_tokens])


def _setup() -> tuple[Any, Any]:
    import torch

    from analysis.runtime import Runtime, set_runtime
    from analysis.settings import EMBEDDED_LM, load_settings

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    runtime = set_runtime(Runtime(load_settings()))
    return runtime, runtime.model(EMBEDDED_LM)


def child(part: str, n_tokens: int) -> dict[str, Any]:
    """One measurement (run in a subprocess)."""
    import torch

    runtime, lm = _setup()
    text = _prompt(lm, runtime, n_tokens)
    ids = lm.tokenizer(text)["input_ids"]
    if part == "dla-ours":
        from analysis.circuits import direct_logit_attribution

        direct_logit_attribution(runtime, lm.model_id, text + " ")  # warm-up on another text
        return _measure(lambda: direct_logit_attribution(runtime, lm.model_id, text))  # uncached: forward + DLA
    if part == "dla-transformerlens":
        from tests.circuits.test_transformerlens import hooked_transformer, transformerlens_dla

        model = hooked_transformer(lm.model, runtime.settings.cache_path / "embedded" / "smollm2-135m-instruct-fp16")
        target = int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())
        with torch.no_grad():
            transformerlens_dla(model, ids, len(ids) - 1, target)
            return _measure(lambda: transformerlens_dla(model, ids, len(ids) - 1, target))
    if part in ("patch-batched", "patch-per-cell"):
        from analysis.circuits.patching import BATCH_TOKENS, CorruptedRun, Corruption, batches, patch_layer
        from tests.circuits.test_patching import hook_patched_logits

        sites = [f"blocks.{layer}.hook_resid_pre" for layer in range(lm.info.n_layers)]
        clean = runtime.run(lm.model_id, text, sites)
        corrupted = list(ids)
        corrupted[1] = lm.tokenizer(" elephant", add_special_tokens=False)["input_ids"][0]
        count = PATCH_POSITIONS[n_tokens]
        positions = [1 + i * (len(ids) - 2) // max(1, count - 1) for i in range(count)]
        corruption = Corruption(text="(ids)")

        def batched() -> None:
            run, _last = CorruptedRun.of(lm, corrupted, corruption)
            for layer in range(lm.info.n_layers):
                for columns in batches(positions, BATCH_TOKENS // len(ids)):
                    patch_layer(lm, corrupted, corruption, "resid", layer, [positions[i] for i in columns],
                                clean.act(sites[layer]).float(), run)

        def per_cell() -> None:
            for layer in range(lm.info.n_layers):
                values = clean.act(sites[layer])
                for position in positions:
                    hook_patched_logits(lm, corrupted, "resid", layer, position, values[position])

        out = _measure(batched if part == "patch-batched" else per_cell)
        return out | {"cells": lm.info.n_layers * count}
    if part == "patch-grid-all":
        from analysis.circuits.patching import patching_grid

        if n_tokens not in FULL_GRID_LENGTHS:
            return {"seconds": None, "peak_mb": None,
                    "skipped": f"full grid measured at {FULL_GRID_LENGTHS} tokens only (hours on 2 CPU cores)"}

        grid = None

        def full_grid() -> None:
            nonlocal grid
            grid = patching_grid(runtime, lm.model_id, text, noise_positions="1-3", site="resid")

        out = _measure(full_grid)
        return out | {"cells": int(grid.values.size), "forwards": grid.forwards}
    if part in ("graph-ours-layer", "graph-ours-all", "graph-dense-layer"):
        from analysis.circuits import circuit_sites
        from analysis.circuits.graph import layer_contributions, run_contributions

        run = runtime.run(lm.model_id, text, circuit_sites(lm.info.n_layers))
        if part == "graph-ours-layer":
            return _measure(lambda: layer_contributions(lm, run, 15))
        if part == "graph-ours-all":
            return _measure(lambda: run_contributions(lm, run))
        import resource

        from tests.circuits.test_graph import dense_layer

        resource.setrlimit(resource.RLIMIT_AS, (DENSE_LIMIT_BYTES, DENSE_LIMIT_BYTES))
        try:
            with torch.inference_mode():
                return _measure(lambda: dense_layer(lm, run, 15))
        except (MemoryError, RuntimeError) as exc:
            return {"seconds": None, "peak_mb": None, "error": f"did not fit in {DENSE_LIMIT_BYTES >> 30} GiB: "
                                                                f"{type(exc).__name__}"}
    raise ValueError(part)


def _run_child(part: str, n_tokens: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.circuits", "--child", part, str(n_tokens)],
                         capture_output=True, text=True, timeout=3600, env={**os.environ, "PYTHONPATH": os.getcwd()})
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"seconds": None, "peak_mb": None, "error": (out.stderr or "no output").strip().splitlines()[-1][:300]}
    return json.loads(lines[-1])


def main() -> None:
    from benchmarks.common import write_result

    results: dict[str, Any] = {}
    for n in LENGTHS:
        row = {part: _run_child(part, n) for part in ("dla-ours", "dla-transformerlens", "patch-batched",
                                                        "patch-per-cell", "patch-grid-all", "graph-ours-layer",
                                                        "graph-ours-all", "graph-dense-layer")}
        results[str(n)] = row
        dense_bytes = n * n * 9 * 576 * 4
        ours, tl = row["dla-ours"], row["dla-transformerlens"]
        batched, per_cell, full = row["patch-batched"], row["patch-per-cell"], row["patch-grid-all"]
        layer, dense = row["graph-ours-layer"], row["graph-dense-layer"]
        row["ratios"] = {
            "dla_time_tl_over_ours": (tl["seconds"] or 0) / ours["seconds"] if ours.get("seconds") else None,
            "dla_memory_ours_over_tl": ours["peak_mb"] / tl["peak_mb"] if tl.get("peak_mb") else None,
            "patching_speedup": per_cell["seconds"] / batched["seconds"] if batched.get("seconds") and
            per_cell.get("seconds") else None,
            "patching_speedup_all_cells": (per_cell["seconds"] / per_cell["cells"] * full["cells"]) / full["seconds"]
            if full.get("seconds") and per_cell.get("seconds") else None,
            "graph_memory_ours_over_dense": layer["peak_mb"] / dense["peak_mb"] if dense.get("peak_mb") else
            layer["peak_mb"] / (dense_bytes / 2**20),
            "graph_memory_basis": "measured" if dense.get("peak_mb") else "the dense tensor's own size (lower bound)",
            "graph_time_dense_over_ours": dense["seconds"] / layer["seconds"] if dense.get("seconds") else None,
            "dense_tensor_mb": dense_bytes / 2**20,
        }
        print(f"\n{n} tokens")
        for part, value in row.items():
            if part != "ratios":
                print(f"  {part:22s} {value}")
        print(f"  ratios {row['ratios']}")
    write_result("circuits", {"lengths": list(LENGTHS), "patch_positions": PATCH_POSITIONS, "results": results,
                              "targets": {"patching_speedup": 3.0, "graph_memory_ours_over_dense_512": 0.1}})


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
