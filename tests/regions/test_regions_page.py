"""Regions callbacks called as functions on the real MiniLM: the job reports progress, views read the
cache (no forward pass on layer/category/graph changes), errors become messages."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.settings import EMBEDDED_ENCODER


@pytest.fixture(scope="module")
def page_state(runtime, minilm, dash_app):
    from callbacks import regions as cb

    summary = cb.load_dataset("builtin", 6, None, None, None, None, None)
    seen: list[tuple[int, str]] = []
    acts = cb.extraction_job(seen.append, summary, EMBEDDED_ENCODER, "first")
    out = cb.on_reduce(acts, "pca", 2, 10, 42, None, None)
    return cb, summary, acts, out, seen


def test_job_progress_and_reduction(page_state):
    _, summary, acts, out, seen = page_state
    assert summary["n"] == 18 and summary["counts"] == {"prose": 6, "code": 6, "scripture": 6}
    assert seen[-1][0] == 100 and "18 texts" in seen[-1][1]
    assert acts["n_layers"] == 7 and acts["classes"] == ["prose", "code", "scripture"]
    store, layer_max, _, _, cats, _, graph_cats, err, is_open = out
    assert layer_max == 6 and cats == ["prose", "code", "scripture"] and graph_cats == ["prose", "code"]
    assert err is None and is_open is False and store["params"]["grid"] == 10


def test_views_do_not_rerun_the_model(page_state, minilm):
    cb, _, _, out, _ = page_state
    store = out[0]
    before = minilm.forward_count
    for layer in (0, 3, 6):
        heat, box, scatter = cb.on_heatmap(store, layer, ["prose", "code"], True)
        z = [np.asarray(t.z) for t in heat.data]
        assert len(z) == 2 and sum(int(a.sum()) for a in z) == 12  # 6 texts per category, every one in a cell
        assert box == {} and len(scatter.data) == 2
    fig, metrics, degree = cb.on_graph(store, ["prose", "code"], 0.3)
    names = {t.name for t in fig.data}
    assert {"prose", "code"} <= names and metrics is not None
    fig3, _, _ = cb.on_graph(store, ["scripture"], 0.3)
    assert "scripture" in {t.name for t in fig3.data}
    assert minilm.forward_count == before


def test_more_components_give_a_correlation_graph(page_state):
    cb, _, acts, _, _ = page_state
    store = cb.on_reduce(acts, "pca", 4, 10, 42, ["prose"], ["prose"])[0]
    _, g = cb.current_graph(store, ["prose"], -1.0)  # threshold -1: every pair of components is linked
    assert g.graph["kind"] == "correlation" and g.number_of_nodes() == 7 * 4
    levels = [d["level"] for _, _, d in g.edges(data=True)]
    assert 0 not in levels  # layer 0 (CLS embedding) is constant: correlations undefined, no edges
    assert all(levels.count(lv) >= 14 for lv in range(1, 6))  # nearly all 16 pairs above rho = -1
    fig, metrics, _ = cb.on_graph(store, ["prose"], 0.3)
    assert "prose" in {t.name for t in fig.data} and "components" in fig.layout.xaxis.title.text
    bad = cb.on_reduce(acts, "pca", 40, 10, 42, None, None)
    assert bad[-1] is True and "n_components" in bad[-2]


def test_errors_are_messages(page_state):
    cb, *_ = page_state
    with pytest.raises(Exception, match="Load a dataset first"):
        cb.extraction_job(lambda _: None, None, EMBEDDED_ENCODER, "first")
    with pytest.raises(Exception, match="Choose a .csv"):
        cb.load_dataset("upload", 6, None, None, None, None, None)
    fig, _, _ = cb.on_graph(page_state[3][0], ["prose", "code", "scripture"], 0.3)
    assert "at most two" in fig.layout.annotations[0].text
