"""Regions callbacks called as functions on the real MiniLM: the extraction job reports progress, views read
the cache (no forward pass on layer/category/graph changes), errors name their bound."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import InputError
from analysis.jobs import Job
from analysis.settings import EMBEDDED_ENCODER


@pytest.fixture(scope="module")
def page_state(runtime, minilm, dash_app):
    from analysis.regions import activations_key, dataset_key_from_summary, load_dataset
    from callbacks import regions as handlers

    summary = handlers.load_dataset_summary("builtin", 6, None, None, None, None, None)
    ds = load_dataset(runtime, dataset_key_from_summary(summary))
    runtime.disk.cache.delete(activations_key(EMBEDDED_ENCODER, ds.content_hash, "first", runtime.settings.max_tokens))
    seen = []  # (another test may have extracted the same dataset: the job is timed from scratch here)
    key, _title, work = handlers.extraction_job(summary, EMBEDDED_ENCODER, "first")
    acts = work(Job(on_progress=seen.append, min_interval_s=0))
    view = handlers.reduce_view(acts, "pca", 2, 10, 42, None, None)
    return handlers, summary, acts, view, seen


def test_job_progress_and_reduction(page_state):
    _, summary, acts, view, seen = page_state
    assert summary["n"] == 18 and summary["counts"] == {"prose": 6, "code": 6, "scripture": 6}
    running = [p for p in seen if p.phase.startswith("running")]
    assert running[-1].done == running[-1].total == 18 and running[-1].unit == "texts"
    assert acts["n_layers"] == 7 and acts["classes"] == ["prose", "code", "scripture"]
    assert view["max"] == 6 and view["cats"] == ["prose", "code", "scripture"] and view["graph_cats"] == ["prose", "code"]
    assert view["store"]["params"]["grid"] == 10
    assert 0 < view["layer"] <= 6  # opens on the best-separating layer, not layer 0 (one cell for CLS pooling)
    assert view["marks"][0] == "embed" and view["marks"][6] == "L6"


def test_views_do_not_rerun_the_model(page_state, minilm):
    handlers, _, _, view, _ = page_state
    store = view["store"]
    before = minilm.forward_count
    for layer in (0, 3, 6):
        heat, box, scatter = handlers.heatmap_view(store, layer, ["prose", "code"], True)
        z = [np.asarray(t.z) for t in heat.data]
        assert len(z) == 2 and sum(int(a.sum()) for a in z) == 12  # 6 texts per category, every one in a cell
        assert box == {} and len(scatter.data) == 2
        assert tuple(heat.layout.xaxis.range) == (-0.5, 9.5) == tuple(heat.layout.yaxis.range)  # square, the grid
    fig, metrics, degree = handlers.graph_view(store, ["prose", "code"], 0.3)
    names = {t.name for t in fig.data}
    assert {"prose", "code"} <= names and metrics is not None
    fig3, _, _ = handlers.graph_view(store, ["scripture"], 0.3)
    assert "scripture" in {t.name for t in fig3.data}
    assert minilm.forward_count == before


def test_min_edge_weight_thins_the_drawing_only(page_state):
    handlers, _, _, view, _ = page_state
    store = view["store"]
    full, metrics_full, _ = handlers.graph_view(store, ["prose", "code"], 0.3, 0)
    thin, metrics_thin, _ = handlers.graph_view(store, ["prose", "code"], 0.3, 3)
    assert "weight ≥ 3" in thin.layout.title.text and "weight" not in full.layout.title.text.split("—")[-1]
    assert len(thin.data) <= len(full.data)
    assert str(metrics_full) == str(metrics_thin)  # the metrics describe the whole graph
    with pytest.raises(InputError, match="Min. edge weight must be a number >= 0") as bad:
        handlers.graph_view(store, ["prose"], 0.3, -1)
    assert bad.value.field == "regions-min-weight"


def test_more_components_give_a_correlation_graph(page_state):
    handlers, _, acts, _, _ = page_state
    store = handlers.reduce_view(acts, "pca", 4, 10, 42, ["prose"], ["prose"])["store"]
    _, g = handlers.current_graph(store, ["prose"], -1.0)  # threshold -1: every pair of components is linked
    assert g.graph["kind"] == "correlation" and g.number_of_nodes() == 7 * 4
    levels = [d["level"] for _, _, d in g.edges(data=True)]
    assert 0 not in levels  # layer 0 (CLS embedding) is constant: correlations undefined, no edges
    assert all(levels.count(lv) >= 14 for lv in range(1, 6))  # nearly all 16 pairs above rho = -1
    fig, metrics, _ = handlers.graph_view(store, ["prose"], 0.3)
    assert "prose" in {t.name for t in fig.data} and "components" in fig.layout.xaxis.title.text
    assert fig.layout.xaxis.dtick == 1  # whole component numbers on the axis
    with pytest.raises(InputError, match="Components must be a whole number from 2 to 17; got 40") as bad:
        handlers.reduce_view(acts, "pca", 40, 10, 42, None, None)
    assert bad.value.field == "regions-k"
    for grid in (1, 500, "x"):
        with pytest.raises(InputError, match="Grid size must be a whole number from 2 to 50"):
            handlers.reduce_view(acts, "pca", 2, grid, 42, None, None)


def test_errors_are_messages(page_state):
    handlers, *_ = page_state
    assert handlers.extraction_job(None, EMBEDDED_ENCODER, "first") is None  # nothing to extract yet
    with pytest.raises(InputError, match="Load a dataset first"):
        handlers.run_extraction(None, EMBEDDED_ENCODER, "first")
    with pytest.raises(InputError, match="Choose a .csv"):
        handlers.load_dataset_summary("upload", 6, None, None, None, None, None)
    with pytest.raises(InputError, match="at most two"):
        handlers.graph_view(page_state[3]["store"], ["prose", "code", "scripture"], 0.3)


def test_extraction_with_the_shared_edit_list(runtime, page_state, smollm2):
    """With edits on, a decoder's extraction is the edited model's (its own key and title); an encoder ignores
    the edit list (edits do not apply to it) and extracts clean states."""
    handlers, summary, _acts, _view, _seen = page_state
    store = {"edits": "neuron:L5.N10=20", "src": ""}
    key, title, work = handlers.extraction_job(summary, "embedded:smollm2-135m-instruct", "last", store)
    assert "edited: neuron:L5.N10=20" in title and key.endswith(key.split(":")[-1]) and "neuron:L5.N10=20" in key
    result = work(Job())
    clean = handlers.extraction_job(summary, "embedded:smollm2-135m-instruct", "last")[2](Job())
    assert result["acts_key"] != clean["acts_key"] and result["edits"] == "neuron:L5.N10=20"
    assert "edited model's states" in handlers.describe_extraction(result)
    encoder_key, encoder_title, _ = handlers.extraction_job(summary, EMBEDDED_ENCODER, "first", store)
    assert "edited" not in encoder_title and "neuron" not in encoder_key


def test_pooling_defaults_to_the_model_kind():
    """LLM-MRI's CLS pooling for encoders; a decoder's first token sees only itself, so decoders open on the
    last real token (a model change switches it; a link's explicit choice is kept)."""
    from callbacks import regions as handlers

    assert handlers.default_pooling(EMBEDDED_ENCODER) == "first"
    assert handlers.default_pooling("embedded:smollm2-135m-instruct") == "last"
    assert handlers.pooling_for_model("embedded:smollm2-135m-instruct", "first") == "last"
    assert handlers.pooling_for_model(EMBEDDED_ENCODER, "last") == "first"
