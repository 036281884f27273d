"""Unloading a model frees it: after every page has computed its products on it, nothing in the runtime
(runs, memos, lenses, embedding statistics, SAE activations, region activations, neuron views) still holds
the model or a view of its weights."""

from __future__ import annotations

import gc
import weakref

from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM

TEXT = "The cat sat on the mat because it was warm. Then it slept."


def _products(runtime: Runtime, tmp_path) -> None:
    from analysis.features import VectorOptions, embedding_stats, load_sae, text_activations, token_list
    from analysis.lens import lens_grid
    from analysis.neurons import unit_on_text
    from analysis.regions import builtin_dataset, compute_activations
    from analysis.tokens import attention_matrix, next_token_stats
    from tests.helpers import ensure_index, make_sae

    lm = runtime.model(EMBEDDED_LM)
    run = runtime.run(EMBEDDED_LM, TEXT, "all")
    next_token_stats(runtime, run)
    attention_matrix(runtime, lm, run, 1, 0, "full", 3)
    lens_grid(runtime, EMBEDDED_LM, TEXT, "logit", "kl_final", 0, 8)
    sae = load_sae(runtime, make_sae(tmp_path / "sae", seed=9), EMBEDDED_LM)
    text_activations(runtime, EMBEDDED_LM, sae, TEXT)
    embedding_stats(runtime, lm)
    token_list(runtime, lm, sae, 3, VectorOptions(), top=10)
    compute_activations(runtime, EMBEDDED_LM, builtin_dataset(runtime.samples, 2, 100), "mean")
    ensure_index(runtime)
    unit_on_text(runtime, EMBEDDED_LM, 3, 0, TEXT)


def test_unload_frees_the_model_and_every_product(settings, tmp_path):
    runtime = Runtime(settings)  # its own registry and caches: the session's runtime is untouched
    lm = runtime.model(EMBEDDED_LM)
    model_ref = weakref.ref(lm.model)
    weights = [lm.model.get_input_embeddings().weight, lm.model.get_output_embeddings().weight]
    storage_refs = [weakref.ref(w.untyped_storage()) for w in weights]
    del lm, weights
    _products(runtime, tmp_path)
    held = {s["name"]: s["entries"] for s in runtime.cache_stats() if s["entries"]}
    assert held.get("runs") and held.get("lens-stats") and held.get("features-embedding"), held

    runtime.registry.unload(EMBEDDED_LM)
    gc.collect()
    assert model_ref() is None, [type(r).__name__ for r in gc.get_referrers(model_ref())]
    assert all(ref() is None for ref in storage_refs), "a cache still holds a view of the model's weights"
    for stats in runtime.cache_stats():
        memo = runtime._memos.get(stats["name"])
        keys = list(memo._values) if memo is not None else []
        assert not any(isinstance(k, tuple) and k and k[0] == EMBEDDED_LM for k in keys), stats["name"]
    assert runtime.runs.stats()["entries"] == 0
    # and the model loads again on the next request, computing afresh
    assert runtime.run(EMBEDDED_LM, TEXT).n_tokens > 5
