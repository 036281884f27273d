"""Regions (NRAG) on the real embedded models, checked against an independent re-computation of
LLM-MRI 0.2.1's documented algorithm (ActivationAreas + Graph2D + PCA, read from its source):

- hidden states: the whole dataset padded at once (truncation 512), ``hidden_states[:, 0]`` per layer;
- grid: StandardScaler -> torchdr PCA (centred SVD, u-based sign flip, U*S) -> ``pd.cut(.., grid)``;
- heatmap: ``pd.crosstab(Y, X)`` of a category's rows;
- graph: per neighbouring layers, join the cell labels by row, group by (cell1, cell2), size = weight.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.regions.data import builtin_dataset
from analysis.regions.extract import extract
from analysis.regions.graph import grid_graph, weight_attr
from analysis.regions.pipeline import build_graph, compute_activations, reduced
from analysis.regions.reduce import ReductionParams, cell_counts, grid_cells, reduce_all
from analysis.settings import EMBEDDED_ENCODER

GRID = 10


# ---- the reference (written from LLM-MRI's documented algorithm, not from our code) ----------

def ref_hidden_states(lm, texts: list[str]) -> np.ndarray:
    """LLM-MRI's extraction: pad the whole dataset at once, first token of every hidden state."""
    enc = lm.tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        hs = lm.model(**enc, output_hidden_states=True).hidden_states
    return np.stack([h[:, 0].numpy() for h in hs])


def ref_pca_2d(x: np.ndarray) -> np.ndarray:
    """sklearn-style standardisation, then torchdr's PCA: SVD of the centred data, the sign of each
    component set by the largest-|u| entry, embedding = U[:, :2] @ diag(S[:2])."""
    n = x.shape[0]
    mean = x.mean(0)
    var = x.var(0)
    eps = np.finfo(np.float64).eps  # a feature is constant within the 2-pass variance error bound
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    std = np.where(constant, 1.0, np.sqrt(var))
    z = (x - mean) / std
    zc = z - z.mean(0)
    u, s, _ = np.linalg.svd(zc, full_matrices=False)
    idx = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[idx, np.arange(u.shape[1])])
    signs[signs == 0] = 1
    u = u * signs
    return u[:, :2] * s[:2]


def ref_grids(hidden: np.ndarray, labels: np.ndarray) -> list[pd.DataFrame]:
    out = []
    for layer, x in enumerate(hidden):
        emb = pd.DataFrame(ref_pca_2d(x.astype(np.float64)), columns=["X", "Y"])
        emb["label"] = labels
        emb = emb.assign(X=pd.cut(emb.X, GRID, labels=False), Y=pd.cut(emb.Y, GRID, labels=False))
        emb["cell_label"] = f"{layer}_" + emb["X"].astype(str) + "_" + emb["Y"].astype(str)
        out.append(emb)
    return out


def ref_edges(grids: list[pd.DataFrame], label: int) -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = {}
    for hs in range(len(grids) - 1):
        left = grids[hs].loc[grids[hs]["label"] == label, ["cell_label"]].rename(columns={"cell_label": "c1"})
        right = grids[hs + 1].loc[grids[hs + 1]["label"] == label, ["cell_label"]].rename(columns={"cell_label": "c2"})
        joined = left.join(right, how="left").groupby(["c1", "c2"]).size()
        edges.update({(a, b): int(w) for (a, b), w in joined.items()})
    return edges


def ref_crosstab(grid: pd.DataFrame, label: int) -> np.ndarray:
    """counts[y, x] from LLM-MRI's crosstab (rows Y, columns X), dense grid x grid."""
    ct = pd.crosstab(grid.loc[grid["label"] == label, "Y"], grid.loc[grid["label"] == label, "X"])
    dense = np.zeros((GRID, GRID), dtype=np.int64)
    for y in ct.index:
        for x in ct.columns:
            dense[int(y), int(x)] = ct.loc[y, x]
    return dense


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_ds(runtime):
    return builtin_dataset(runtime.samples, n_per_label=10, max_rows=runtime.settings.max_dataset_rows,
                           max_chars=500)


@pytest.fixture(scope="module")
def ours(runtime, minilm, small_ds):
    key, acts = compute_activations(runtime, EMBEDDED_ENCODER, small_ds, "first")
    red = reduced(runtime, key, ReductionParams("pca", 2, GRID, 42), small_ds.label_ids, len(small_ds.classes))
    return key, acts, red


@pytest.fixture(scope="module")
def reference(minilm, small_ds):
    hidden = ref_hidden_states(minilm, list(small_ds.texts))
    return hidden, ref_grids(hidden, small_ds.label_ids)


# ---- tests -------------------------------------------------------------------------------------

def test_builtin_dataset_is_balanced_three_way(small_ds):
    assert small_ds.classes[:2] == ("prose", "code")
    assert set(small_ds.counts().values()) == {10}
    assert len(small_ds) == 10 * len(small_ds.classes)


def test_first_token_extraction_matches_whole_dataset_padding(ours, reference):
    _, acts, _ = ours
    hidden, _ = reference
    assert acts.pooled.shape == hidden.shape == (7, acts.pooled.shape[1], 384)
    # our batches are sorted by length and padded per batch; masked attention makes that exact up to float noise
    np.testing.assert_allclose(acts.pooled, hidden, atol=2e-4, rtol=1e-4)


def test_cell_counts_and_graph_equal_llm_mri_on_same_inputs(small_ds, reference):
    """Feed LLM-MRI's own hidden states through our reduction, grid, counts and graph."""
    hidden, grids = reference
    params = ReductionParams("pca", 2, GRID, 42)
    cells = grid_cells(reduce_all(hidden, params), GRID)
    counts = cell_counts(cells, small_ds.label_ids, len(small_ds.classes), GRID)
    for layer in range(hidden.shape[0]):
        for c in range(len(small_ds.classes)):
            np.testing.assert_array_equal(counts[layer, c], ref_crosstab(grids[layer], c), err_msg=f"layer {layer} class {c}")
    for c, name in enumerate(small_ds.classes):
        g = grid_graph(cells, small_ds.label_ids, small_ds.classes, [name], GRID)
        mine = {(u, v): d["weight"] for u, v, d in g.edges(data=True)}
        assert mine == ref_edges(grids, c)
        assert sum(mine.values()) == 10 * (hidden.shape[0] - 1)  # every text moves once per layer pair


def test_end_to_end_counts_and_edges_equal_reference(ours, small_ds, reference):
    """Our whole pipeline (own extraction) gives LLM-MRI's per-cell counts and 2-D edges/weights."""
    _, _, red = ours
    _, grids = reference
    for layer in range(len(grids)):
        for c in range(len(small_ds.classes)):
            np.testing.assert_array_equal(red.counts[layer, c], ref_crosstab(grids[layer], c))
    a, b = small_ds.classes[0], small_ds.classes[1]
    g = build_graph(red, small_ds, [a, b])
    ref_a, ref_b = ref_edges(grids, 0), ref_edges(grids, 1)
    assert set(g.edges()) == set(ref_a) | set(ref_b)
    for (u, v), d in g.edges.items():  # BOTH categories' weights survive on shared edges
        assert d[weight_attr(a)] == ref_a.get((u, v), 0)
        assert d[weight_attr(b)] == ref_b.get((u, v), 0)
        assert d["weight"] == ref_a.get((u, v), 0) + ref_b.get((u, v), 0)
    shared = set(ref_a) & set(ref_b)
    assert shared, "prose and code share at least the constant layer-0 region"


def test_cache_means_no_second_forward_pass(runtime, minilm, small_ds, ours):
    before = minilm.forward_count
    key, acts = compute_activations(runtime, EMBEDDED_ENCODER, small_ds, "first")
    assert key == ours[0] and minilm.forward_count == before
    np.testing.assert_array_equal(acts.pooled, ours[1].pooled)
    # a different pooling is a different cache entry (and really different numbers); drop it from the
    # persistent disk cache first so this run really extracts
    from analysis.regions.pipeline import activations_key

    runtime.disk.cache.delete(activations_key(EMBEDDED_ENCODER, small_ds.content_hash, "mean", runtime.settings.max_tokens))
    _, mean_acts = compute_activations(runtime, EMBEDDED_ENCODER, small_ds, "mean")
    assert minilm.forward_count > before
    assert not np.allclose(mean_acts.pooled[3], acts.pooled[3])


def test_mean_and_last_pooling_on_decoder_match_unpadded_runs(smollm2):
    """SmolLM2 (decoder): batched, right-padded, sorted pooling == one text at a time, no padding."""
    texts = ["The cat sat on the mat.", "def add(a, b):\n    return a + b\n# a longer line of code here", "Hi"]
    for pooling in ("mean", "last"):
        acts = extract(smollm2, texts, pooling, max_tokens=64, max_batch=2)
        for i, text in enumerate(texts):
            enc = smollm2.tokenizer(text, return_tensors="pt")
            last_block: list[torch.Tensor] = []
            hook = smollm2.model.model.layers[-1].register_forward_hook(
                lambda _m, _i, out, kept=last_block: kept.append(out[0] if isinstance(out, tuple) else out))
            with torch.no_grad():
                hs = smollm2.model.base_model(**enc, output_hidden_states=True).hidden_states
            hook.remove()
            # HF's hidden_states[-1] is taken after the final norm; the Regions state L30 is the last block's
            # output, as "layer L" is on every other page (blocks.29.hook_resid_post)
            states = [*hs[:-1], last_block[0]]
            ref = np.stack([(h[0].mean(0) if pooling == "mean" else h[0, -1]).numpy() for h in states])
            assert acts.pooled.shape[0] == smollm2.info.n_layers + 1
            np.testing.assert_allclose(acts.pooled[:, i], ref, atol=2e-3, rtol=2e-3, err_msg=f"{pooling} text {i}")


def test_states_equal_capture_sites_of_the_same_name(runtime, smollm2, minilm):
    """Regions' state i is ``capture``'s site of the name :func:`state_sites` gives, for every pooling,
    and the labels are the Lens page's (embed, L1, ...)."""
    from analysis.capture import capture
    from analysis.regions import pool, state_labels, state_sites

    for lm in (smollm2, minilm):
        texts = ["The cat sat on the mat.", "Rome is the capital of Italy, and Paris of France.", "Hi"]
        sites = state_sites(lm.info.n_layers)
        assert state_labels(lm.info.n_layers)[:2] == ["embed", "L1"] and len(sites) == lm.info.n_layers + 1
        for pooling in ("first", "mean", "last"):
            acts = extract(lm, texts, pooling, max_tokens=64, max_batch=2)
            for i, text in enumerate(texts):
                ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
                cap = capture(lm, ids, sites, logits=False)
                mask = torch.ones_like(ids)
                ref = np.stack([pool(cap.acts[site], mask, pooling)[0].numpy() for site in sites])
                np.testing.assert_allclose(acts.pooled[:, i], ref, atol=2e-3, rtol=2e-3)


def test_edited_extraction_is_the_edited_runs_states(runtime, smollm2):
    """The NRAG of the edited model: pooled states with an edit list equal the edited run's own residuals
    (last-token pooling), states before the edited block equal the clean ones, and the disk key differs."""
    from analysis.edits import NeuronEdit
    from analysis.settings import EMBEDDED_LM

    ds = builtin_dataset(runtime.samples, n_per_label=2, max_rows=runtime.settings.max_dataset_rows, max_chars=300)
    edits = [NeuronEdit(5, 10, 20.0)]
    clean_key, clean = compute_activations(runtime, EMBEDDED_LM, ds, "last")
    edited_key, edited = compute_activations(runtime, EMBEDDED_LM, ds, "last", edits=edits)
    assert edited_key != clean_key
    np.testing.assert_allclose(edited.pooled[:6], clean.pooled[:6], atol=1e-4, rtol=1e-4)  # embed .. L5: before
    assert np.abs(edited.pooled[6:] - clean.pooled[6:]).max() > 1e-2
    run = runtime.run(EMBEDDED_LM, ds.texts[0], ["blocks.9.hook_resid_pre"], edits=edits)
    np.testing.assert_allclose(edited.pooled[9, 0], run.act("blocks.9.hook_resid_pre")[-1].numpy(), atol=2e-3, rtol=1e-3)
