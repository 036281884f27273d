"""Regions without a model: dataset validation messages, the Spearman graph against LLM-MRI's rank
formula, graph metrics against LLM-MRI's pandas definitions, both categories' weights, exports,
the classifier evaluation."""

from __future__ import annotations

import base64
import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

import analysis.regions.data as rd
import analysis.regions.pipeline as nrag
from analysis.errors import InputError
from analysis.regions.graph import correlation_graph, graph_payload, grid_graph, weight_attr
from analysis.regions.metrics import degree_by_layer, evaluate_classifier, graph_metrics


def _data_url(text: str) -> str:
    return "data:text/csv;base64," + base64.b64encode(text.encode()).decode()


# ---- datasets ----------------------------------------------------------------------------------

def test_csv_and_jsonl_uploads_parse():
    ds = rd.parse_upload(_data_url("text,label\nhello there,a\nbye now,b\nagain,a\n"), "x.csv", 10_000, 100)
    assert ds.classes == ("a", "b") and ds.counts() == {"a": 2, "b": 1} and ds.texts[1] == "bye now"
    jl = "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in [("x y", "pos"), ("z", "neg")])
    ds2 = rd.parse_table_bytes(jl.encode(), "d.jsonl", 10_000, 100)
    assert ds2.classes == ("neg", "pos") and list(ds2.label_ids) == [1, 0]
    assert ds.content_hash != ds2.content_hash


@pytest.mark.parametrize("csv_text, needle", [
    ("body,label\nx,a\ny,b\n", "no 'text' column"),
    ("text,category\nx,a\ny,b\n", "no 'label' column"),
    ("text,label\nx,a\ny,a\n", "only one class"),
    ("text,label\nx,a\n,b\n", "empty or non-text 'text'"),
    ("text,label\nx,a\ny,\n", "empty 'label'"),
])
def test_bad_tables_give_clear_messages(csv_text, needle):
    with pytest.raises(InputError, match=needle):
        rd.parse_upload(_data_url(csv_text), "bad.csv", 10_000, 100)


def test_row_and_size_bounds_are_named():
    rows = "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(12))
    with pytest.raises(InputError, match=r"12 rows; the limit is 10 rows \(max_dataset_rows"):
        rd.parse_upload(_data_url(rows), "big.csv", 10_000, 10)
    with pytest.raises(InputError, match=r"upload limit is .*max_upload_bytes"):
        rd.parse_upload(_data_url("text,label\n" + "x" * 5000 + ",a\n"), "huge.csv", 1000, 10)
    with pytest.raises(InputError, match="unknown file type"):
        rd.parse_table_bytes(b"text,label\n", "x.parquet", 1000, 10)


def test_saved_hf_dataset_with_classlabel_and_empty_class(tmp_path):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos", "odd"])})
    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 1]}, features=feats).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(InputError, match="'odd' have no texts"):
        rd.load_saved_dataset(str(tmp_path / "d"), 100)
    feats2 = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 1]}, features=feats2).save_to_disk(str(tmp_path / "e"))
    ds = rd.load_saved_dataset(str(tmp_path / "e"), 100)
    assert ds.classes == ("neg", "pos") and ds.labels == ("neg", "pos", "pos")
    with pytest.raises(InputError, match="not a directory"):
        rd.load_saved_dataset(str(tmp_path / "missing"), 100)


def test_hub_offline_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="offline mode is on"):
        rd.load_hub_dataset("ag_news", 100)


def test_builtin_bound(runtime):
    with pytest.raises(InputError, match=r"at most 5,000 rows\) must be a whole number from 2 to 1,666; got 10,000") as bad:
        rd.builtin_dataset(runtime.samples, 10_000, runtime.settings.max_dataset_rows)
    assert bad.value.field == "regions-n"
    for value in (0, 1, "abc"):
        with pytest.raises(InputError, match="from 2 to 1,666"):
            rd.builtin_dataset(runtime.samples, value, runtime.settings.max_dataset_rows)


# ---- graphs --------------------------------------------------------------------------------------

def llm_mri_spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LLM-MRI GraphND._spearman_correlation: argsort-twice ranks, covariance / (std x std)."""
    rx = x.argsort(dim=0).argsort(dim=0).double()
    ry = y.argsort(dim=0).argsort(dim=0).double()
    rx -= rx.mean(0, keepdim=True)
    ry -= ry.mean(0, keepdim=True)
    cov = rx.t() @ ry / (x.shape[0] - 1)
    return cov / (rx.std(0).unsqueeze(1) * ry.std(0).unsqueeze(0))


def test_correlation_graph_matches_llm_mri_spearman():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 4))
    coords = np.stack([base, base @ rng.normal(size=(4, 4)) + 0.3 * rng.normal(size=(60, 4)), rng.normal(size=(60, 4))])
    labels = np.array([0] * 30 + [1] * 30)
    g = correlation_graph(coords, labels, ("a", "b"), ["a", "b"], threshold=0.3)
    for cat, c in (("a", 0), ("b", 1)):
        sel = labels == c
        for level in range(2):
            rho = llm_mri_spearman(torch.tensor(coords[level, sel]), torch.tensor(coords[level + 1, sel])).numpy()
            for i in range(4):
                for j in range(4):
                    u, v = f"{level}_{i}", f"{level + 1}_{j}"
                    got = g.edges[u, v][weight_attr(cat)] if g.has_edge(u, v) else 0.0
                    assert got == pytest.approx(rho[i, j] if rho[i, j] > 0.3 else 0.0, abs=1e-9)
    assert g.number_of_nodes() == 12 and g.number_of_edges() > 0


def _toy_cells() -> tuple[np.ndarray, np.ndarray]:
    # 3 layers, 6 texts; grid cells (x, y)
    cells = np.array([
        [[0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
        [[1, 2], [1, 2], [3, 3], [1, 2], [3, 3], [3, 3]],
        [[2, 2], [2, 2], [2, 2], [4, 4], [4, 4], [2, 2]],
    ])
    return cells, np.array([0, 0, 0, 1, 1, 1])


def test_two_categories_keep_both_weights_and_fixed_positions():
    cells, labels = _toy_cells()
    g = grid_graph(cells, labels, ("a", "b"), ["a", "b"], grid=5)
    e = g.edges["0_0_0", "1_1_2"]
    assert (e[weight_attr("a")], e[weight_attr("b")], e["weight"], e["label"]) == (2, 1, 3, "a+b")
    e2 = g.edges["1_3_3", "2_2_2"]
    assert (e2[weight_attr("a")], e2[weight_attr("b")]) == (1, 1)
    assert g.edges["1_1_2", "2_4_4"][weight_attr("a")] == 0
    ga = grid_graph(cells, labels, ("a", "b"), ["a"], grid=5)
    for n, d in ga.nodes(data=True):  # same node -> same place whatever the categories
        assert (d["pos_x"], d["pos_y"]) == (g.nodes[n]["pos_x"], g.nodes[n]["pos_y"])
    with pytest.raises(InputError, match="at most two"):
        grid_graph(cells, labels, ("a", "b", "c"), ["a", "b", "c"], grid=5)
    payload = graph_payload(g)
    assert {n["id"]: n["degree"] for n in payload["nodes"]}["0_0_0"] == 2


def test_metrics_equal_llm_mri_definitions():
    cells, labels = _toy_cells()
    g = grid_graph(cells, labels, ("a", "b"), ["a", "b"], grid=5)
    m = graph_metrics(g)
    deg = pd.Series([v for _, v in nx.degree(g)])
    st = pd.Series([v for _, v in g.degree(weight="weight")])
    assert m.mean_degree == pytest.approx(deg.mean()) and m.var_degree == pytest.approx(deg.var())
    assert m.skew_degree == pytest.approx(deg.skew()) and m.kurt_degree == pytest.approx(deg.kurt())
    assert m.mean_strength == pytest.approx(st.mean()) and m.var_strength == pytest.approx(st.var())
    assert m.skew_strength == pytest.approx(st.skew()) and m.kurt_strength == pytest.approx(st.kurt())
    assert m.density == pytest.approx(nx.density(g))
    assert m.assortativity == pytest.approx(nx.degree_assortativity_coefficient(g, weight="weight"))
    layers = g.graph["layers"]
    com = sum(pd.Series([k for k in g.nodes if k.split("_")[0] == str(i)]).count() * (i - layers / 2)
              for i in range(layers + 1)) / g.number_of_nodes()
    assert m.center_of_mass == pytest.approx(com)
    strengths = dict(g.degree(weight="weight"))
    cos = sum(pd.Series([v for k, v in strengths.items() if k.split("_")[0] == str(i)]).std() * (i - layers / 2)
              for i in range(layers) if sum(k.split("_")[0] == str(i) for k in strengths) > 1)
    assert m.center_of_strength == pytest.approx(cos)
    rows = degree_by_layer(g)
    assert [r["nodes"] for r in rows] == [1, 2, 2] and rows[0]["mean_degree"] == 2.0


def test_exports_round_trip(tmp_path):
    cells, labels = _toy_cells()
    g = grid_graph(cells, labels, ("a", "b"), ["a", "b"], grid=5)
    path = tmp_path / "g.graphml"
    path.write_bytes(nrag.graphml_bytes(g))
    back = nx.read_graphml(path)
    assert back.edges["0_0_0", "1_1_2"][weight_attr("b")] == 1 and back.number_of_edges() == g.number_of_edges()
    data = json.loads(nrag.graph_json(g))
    assert len(data["edges"]) == g.number_of_edges() and "weight_a" in data["edges"][0]
    csv_text = nrag.metrics_csv(g, {"model": "m"})
    assert "graph,model,m" in csv_text and "graph,density," in csv_text and "layer 2,mean_degree" in csv_text


def test_classifier_evaluation_deltas():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 40)
    coords = rng.normal(size=(3, 120, 2)) * 0.1
    coords[2, :, 0] += labels * 3.0  # the reduced layers separate the classes perfectly
    full = rng.normal(size=(120, 20))  # the "full" layer is pure noise
    rep = evaluate_classifier(coords, full, labels, n_splits=3)
    assert rep.n_reduced_features == 6 and rep.n_full_features == 20
    assert np.mean(rep.reduced["accuracy"]) == 1.0
    assert np.mean(rep.full["accuracy"]) < 0.7
    d = rep.delta()
    assert d["accuracy"] == pytest.approx(np.mean(rep.full["accuracy"]) - 1.0)
    assert d["f1_macro"] < -0.3


def test_pca_and_svd_reductions_against_numpy():
    from analysis.regions.reduce import ReductionParams, reduce_layer

    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 8))
    z = (x - x.mean(0)) / x.std(0)
    u, s, _ = np.linalg.svd(z - z.mean(0), full_matrices=False)
    ref = u[:, :3] * s[:3]
    ref *= np.sign(ref[np.argmax(np.abs(ref), axis=0), range(3)])  # largest-|score| sample positive
    for method in ("pca", "svd"):
        got = reduce_layer(x, ReductionParams(method, 3, 10, 0))
        np.testing.assert_allclose(got, ref, atol=1e-8)


def test_umap_is_imported_lazily():
    import subprocess
    import sys

    code = "import sys, analysis.regions.pipeline, callbacks.regions; print('umap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_extraction_cancel_and_bad_pooling(minilm):
    from analysis.errors import Cancelled
    from analysis.jobs import Job
    from analysis.regions import extract

    job = Job()
    job.cancel()  # the one cancel rule: the job stops at its next check
    with pytest.raises(Cancelled):
        extract(minilm, ["a b c", "d e"], "first", job=job)
    assert minilm.model.config._attn_implementation == "eager"  # SDPA only while extracting
    acts = extract(minilm, ["a b c", "d e"], "first")
    assert acts.pooled.shape == (7, 2, 384) and minilm.model.config._attn_implementation == "eager"
    with pytest.raises(InputError, match="Unknown pooling"):
        extract(minilm, ["a"], "max")


def test_page_upload_stores_dataset_for_the_job(runtime):
    from analysis.regions.pipeline import dataset_key_from_summary, load_dataset
    from callbacks import regions as cb

    summary = cb.load_dataset_summary("upload", None, _data_url("text,label\nalpha beta,x\ngamma,y\ndelta,y\n"),
                                      "mine.csv", None, None, None)
    assert summary["n"] == 3 and summary["counts"] == {"x": 1, "y": 2} and summary["source"] == "mine.csv"
    ds = load_dataset(runtime, dataset_key_from_summary(summary))
    assert ds.texts[0] == "alpha beta" and ds.content_hash == summary["key"]
