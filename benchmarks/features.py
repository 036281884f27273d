"""Features page: top-activating examples for ALL features of the embedded SAE over a token budget,
ours (one capture pass + sae-lens encode + sparse table sorted by feature) vs the floor (the same
forward + encode with nothing kept), wall time and memory; plus the definition-tree build time at
default settings and the time to open one feature's dashboard from the cached scan.

sae-dashboard (PyPI) is not run: it drives a TransformerLens ``HookedTransformer`` by hook name, and
the embedded SAE hooks the HF module path ``model.layers.15`` of an HF model (no TransformerLens
weights offline), so the forward+encode floor is the reference: no tool can be faster than it.

``python -m benchmarks features [--tokens 50000]`` -> benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

DEFAULT_BUDGET = 50_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _random_topk_sae(runtime: Any) -> Any:
    """A randomly initialised sae-lens TopK SAE shaped like the embedded one, saved and loaded from disk."""
    import json
    import tempfile
    from pathlib import Path

    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    from analysis.features.sae import load_sae
    from analysis.settings import EMBEDDED_LM

    torch.manual_seed(0)
    cfg = TopKSAEConfig(d_in=576, d_sae=2304, k=32)
    cfg.metadata.hook_name = "model.layers.15"
    cfg.metadata.model_name = "smollm2-135m-instruct"
    path = Path(tempfile.mkdtemp(prefix="features-bench-sae-"))
    TopKSAE(cfg).save_model(str(path))
    (path / "glassbox.json").write_text(json.dumps({"model_id": EMBEDDED_LM}))
    return load_sae(runtime, str(path), EMBEDDED_LM)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import numpy as np
    import torch

    from analysis.capture import capture
    from analysis.features.sae import embedded_sae_exists, load_sae
    from analysis.features.scan import corpus_windows, feature_stats, scan_corpus
    from analysis.features.tree import TreeOptions, build_tree
    from analysis.features.vectors import VectorOptions
    from analysis.runtime import Runtime
    from analysis.settings import EMBEDDED_LM, load_settings
    from benchmarks.common import write_result

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=DEFAULT_BUDGET)
    args = parser.parse_args(argv or [])
    settings = load_settings()
    runtime = Runtime(settings)
    lm = runtime.model(EMBEDDED_LM)
    if embedded_sae_exists(settings.cache_dir):
        sae, which = load_sae(runtime, "embedded", EMBEDDED_LM), "embedded SAE (make sae)"
    else:  # same shape and sparsity (TopK, 2304 x 576, k=32) so the timings transfer; said in the result
        sae, which = _random_topk_sae(runtime), "random TopK SAE of the embedded SAE's shape (make sae not run)"
    texts = runtime.samples.training_text(args.tokens * 6)
    windows = corpus_windows(lm, texts, args.tokens)
    n_tokens = int(windows.size)
    print(f"{n_tokens:,} tokens in {windows.shape[0]} windows of {windows.shape[1]}; SAE {sae.d_sae} features")

    rss0 = _rss_mb()
    start, cpu0 = time.perf_counter(), time.process_time()
    for lo in range(0, windows.shape[0], 8):
        ids = torch.from_numpy(windows[lo : lo + 8].astype(np.int64))
        acts = capture(lm, ids, [sae.site], logits=False, stop_early=True).acts[sae.site]
        sae.encode(acts)
    floor_s = time.perf_counter() - start
    floor_cpu = time.process_time() - cpu0
    rss_floor = _rss_mb()

    start, cpu0 = time.perf_counter(), time.process_time()
    scan = scan_corpus(lm, sae, windows)
    ours_scan_s = time.perf_counter() - start
    start = time.perf_counter()
    alive = [f for f in range(sae.d_sae) if scan.feature_ptr[f + 1] > scan.feature_ptr[f]]
    tops = {f: feature_stats(lm, scan, f, n_top=10, n_bins=5, per_bin=3) for f in alive}
    ours_topk_s = time.perf_counter() - start
    ours_cpu = time.process_time() - cpu0
    rss_ours = _rss_mb()
    table_mb = (scan.pos.nbytes + scan.val.nbytes + scan.token_ids.nbytes) / 1e6

    start = time.perf_counter()
    feature_stats(lm, scan, alive[0], n_top=10)
    one_feature_s = time.perf_counter() - start

    feature = max(alive, key=lambda f: scan.feature_ptr[f + 1] - scan.feature_ptr[f])
    start = time.perf_counter()
    tree = build_tree(runtime, lm, sae, feature, VectorOptions(), TreeOptions())
    tree_s = time.perf_counter() - start

    ours_total = ours_scan_s + ours_topk_s
    result = {
        "tokens": n_tokens,
        "features": sae.d_sae,
        "alive_features": len(alive),
        "nonzeros": int(len(scan.val)),
        "floor_forward_encode_s": round(floor_s, 2),
        "ours_scan_s": round(ours_scan_s, 2),
        "ours_all_feature_dashboards_s": round(ours_topk_s, 2),
        "ours_total_s": round(ours_total, 2),
        "ratio_ours_to_floor": round(ours_total / floor_s, 3),
        "floor_cpu_s": round(floor_cpu, 2),
        "ours_cpu_s": round(ours_cpu, 2),
        "cpu_ratio_ours_to_floor": round(ours_cpu / floor_cpu, 3),
        "tokens_per_s_ours": round(n_tokens / ours_total, 1),
        "sparse_table_mb": round(table_mb, 1),
        "peak_rss_mb_after_floor": round(rss_floor, 1),
        "peak_rss_mb_after_ours": round(rss_ours, 1),
        "rss_mb_at_start": round(rss0, 1),
        "one_feature_dashboard_from_cache_s": round(one_feature_s, 4),
        "definition_tree": {"feature": feature, "nodes": len(tree.nodes) - 1, "forwards": tree.forwards,
                            "seconds": round(tree_s, 2), "settings": "top-k 5, cut-off 5e-5, max depth 25"},
        "sae": which,
        "peer": "sae-dashboard not run (needs a TransformerLens HookedTransformer); floor = forward+encode only",
        "torch_threads": torch.get_num_threads(),
        "examples_per_feature": len(next(iter(tops.values())).top) if tops else 0,
    }
    print(f"{'':<34}{'seconds':>10}{'x floor':>10}")
    print(f"{'floor (forward + encode)':<34}{floor_s:>10.2f}{1.0:>10.2f}")
    print(f"{'ours (scan + all dashboards)':<34}{ours_total:>10.2f}{ours_total / floor_s:>10.2f}")
    print(f"definition tree (defaults): {tree_s:.1f} s, {len(tree.nodes) - 1} nodes, {tree.forwards} forwards")
    print(f"peak RSS {rss_ours:.0f} MB; sparse table {table_mb:.1f} MB")
    write_result("features", result)
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
