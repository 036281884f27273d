"""Edited runs vs clean runs, and focus switching between pages.

- cost: one 512-token SmolLM2 run capturing every residual site (what the Lens page reads), clean vs with
  each edit list below, interleaved, medians; an edited run is the same single forward with the edit hooks
  (a feature edit also encodes the SAE at its site). Target: edited <= 1.3x clean.
- focus: the same text and token opened on Tokens (panel + strip), Lens (grid with the focus column),
  Features (the text's activations) and Neurons (the unit on the text), then switching between them at other
  positions and layers: the model's forward count after the first visit of each page (target: 0 more).

``python -m benchmarks edits`` -> benchmarks/results/edits.json.
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N_TOKENS = 512
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
EDIT_LISTS = {
    "neuron": "neuron:L5.N10=20",
    "head mean": "head:L3.H2=mean",
    "SAE feature ablation": "feature[embedded]:F100",
    "patch": "patch:L6.resid_pre@3-8",
    "four kinds": "neuron:L5.N10=20;head:L3.H2=mean;feature[embedded]:F100;patch:L6.resid_pre@3-8",
}


def main() -> None:
    import tempfile

    os.environ.setdefault("GLASSBOX_CACHE_DIR", tempfile.mkdtemp(prefix="glassbox-bench-edits-"))
    import torch

    from analysis.capture import run_text
    from analysis.edits import capture_edits, parse_edits, resolve_edits
    from analysis.features import load_sae
    from analysis.lens.grid import lens_sites
    from analysis.runtime import Runtime, set_runtime
    from analysis.settings import EMBEDDED_LM, load_settings
    from benchmarks.capture import sample_ids
    from benchmarks.common import interleaved, write_result

    runtime = set_runtime(Runtime(load_settings()))
    lm = runtime.model(EMBEDDED_LM)
    ids = sample_ids(runtime, lm.tokenizer, N_TOKENS)
    text = lm.tokenizer.decode(ids[0, 1:])
    source = lm.tokenizer.decode(ids[0, 200:300])
    sites = lens_sites(lm.info.n_layers)

    def clean() -> None:
        run_text(lm, text, sites, max_tokens=4096)

    results = {}
    print(f"SmolLM2-135M, {len(runtime.tokens(EMBEDDED_LM, text))} tokens, {len(sites)} sites, {REPEATS} repeats, "
          f"{torch.get_num_threads()} threads")
    for name, form in EDIT_LISTS.items():
        edits = resolve_edits(runtime, EMBEDDED_LM, parse_edits(form, sources=[source]),
                              sae=lambda ref: load_sae(runtime, ref, EMBEDDED_LM))
        hooks = capture_edits(lm, edits)

        def edited(hooks=hooks) -> None:
            run_text(lm, text, sites, max_tokens=4096, edits=hooks)

        clean_times, edited_times = interleaved(clean, edited, REPEATS)
        ratio = statistics.median(edited_times) / statistics.median(clean_times)
        results[name] = {"edits": form, "clean_s": clean_times, "edited_s": edited_times, "ratio": ratio}
        print(f"  {name:22s} clean {statistics.median(clean_times):.3f} s   edited "
              f"{statistics.median(edited_times):.3f} s   ratio {ratio:.3f}x (target <= 1.3x)")
    focus = focus_switching(runtime, lm, text)
    print(f"  focus: first visits {focus['first_visit_forwards']} forwards; {focus['switches']} switches between "
          f"pages then {focus['switch_forwards']} forwards (target 0)")
    write_result("edits", {"model": EMBEDDED_LM, "n_tokens": N_TOKENS, "repeats": REPEATS, "cost": results,
                           "focus": focus, "targets": {"ratio": "<= 1.3", "switch_forwards": 0}})


def focus_switching(runtime, lm, text: str) -> dict:
    """Forward counts: each page's first visit of the text, then switches between pages (other tokens,
    layers, neurons, features) that keep model and text."""
    import callbacks.lens as lens_page
    import callbacks.tokens as tokens_page
    from analysis.features import load_sae, text_activations
    from analysis.neurons import unit_on_text
    from analysis.settings import EMBEDDED_LM
    from tests.helpers import ensure_index

    ensure_index(runtime)  # the Neurons page's index (4 layers, small)
    sae = load_sae(runtime, "embedded", EMBEDDED_LM)
    lm.tokenizer  # noqa: B018 - loaded
    runtime.samples  # noqa: B018

    def visit(pos: int, layer: int) -> None:
        meta = tokens_page.load_view(EMBEDDED_LM, "user", text)[1]
        tokens_page.compute_panel(meta, {"s": 0, "i": pos}, "token", "hook_resid_post", layer, "none", 0, "",
                                  EMBEDDED_LM, "user", text)
        tokens_page.compute_paint(meta, {"s": 0, "i": pos}, "attention", "hook_resid_post", layer, 1, False,
                                  "from", "full", "tokens", 0, "none", EMBEDDED_LM, "user", text)
        lens_page.build_view(EMBEDDED_LM, "user", text, "kl_final", "logit", "resid", "js", max(0, pos - 12), 24,
                             None, focus=pos)
        text_activations(runtime, EMBEDDED_LM, sae, text).top_features(5)
        unit_on_text(runtime, EMBEDDED_LM, layer % 4, pos, text)

    before = lm.forward_count
    visit(5, 1)
    first = lm.forward_count - before
    before = lm.forward_count
    switches = 0
    for pos, layer in ((40, 2), (120, 3), (7, 0), (300, 1)):
        visit(pos, layer)
        switches += 5
    return {"first_visit_forwards": first, "switches": switches, "switch_forwards": lm.forward_count - before}


if __name__ == "__main__":
    main()
