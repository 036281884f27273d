"""Tokens page: every tool's values against direct computations on the real SmolLM2."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from dash._utils import to_json

import analysis.tokens as T
from analysis.errors import GlassboxError, InputError
from analysis.settings import EMBEDDED_LM
from analysis.tokens import attention_values, attn_spec, head_values, histogram, iqr_outliers, normalize, open_samples
from analysis.tokens.stats import median_token

TEXT = ("The capital of France is Paris. The capital of Germany is Berlin.\n"
        "The capital of Italy is Rome, and the capital of Spain is")
STATES = [EMBEDDED_LM, ["user"], TEXT]


@pytest.fixture(scope="module")
def cb(runtime):
    import callbacks.tokens as module

    return module


@pytest.fixture(scope="module")
def loaded(cb, runtime, smollm2):
    """The page's run of TEXT (as the callbacks build it) and the meta the page keeps."""
    out = cb.load_samples(EMBEDDED_LM, ["user"], TEXT, "predictions")
    opened = open_samples(runtime, *STATES)
    assert not opened.light
    return opened.lm, opened.runs[0], out[1]


@pytest.fixture(scope="module")
def hf(loaded):
    """HF's own forward of the same ids: logits, loss, attention patterns and hidden states."""
    lm, run, _meta = loaded
    ids = torch.tensor([run.token_ids])
    with torch.inference_mode():
        out = lm.model(ids, labels=ids, output_attentions=True, output_hidden_states=True)
    return out


def test_predictions_match_softmax_of_hf_logits(runtime, loaded, hf):
    lm, run, _ = loaded
    probs = torch.softmax(hf.logits[0].float(), dim=-1)
    for pos in (0, 7, run.n_tokens - 2):
        panel = T.predictions(runtime, lm, run, pos)
        ref_p, ref_i = probs[pos].topk(5)
        assert [p.token_id for p in panel.top] == ref_i.tolist()
        np.testing.assert_allclose([p.prob for p in panel.top], ref_p.numpy(), rtol=1e-4, atol=1e-6)
        true_id = run.token_ids[pos + 1]
        assert panel.true_prob == pytest.approx(float(probs[pos, true_id]), rel=1e-4, abs=1e-7)
        assert panel.true_rank == int((probs[pos] > probs[pos, true_id]).sum()) + 1
        assert [p.is_true for p in panel.top] == [i == true_id for i in ref_i.tolist()]
    last = T.predictions(runtime, lm, run, run.n_tokens - 1)
    assert last.true_token is None and last.loss is None


def test_loss_matches_hf_loss(runtime, loaded, hf):
    _lm, run, _ = loaded
    stats = T.next_token_stats(runtime, run)
    assert np.isnan(stats.loss[-1])
    assert float(np.nanmean(stats.loss)) == pytest.approx(float(hf.loss), rel=1e-4)
    # one position by hand: -log softmax(logits[t])[next]
    t = 5
    ref = -torch.log_softmax(hf.logits[0, t].float(), -1)[run.token_ids[t + 1]]
    assert stats.loss[t] == pytest.approx(float(ref), rel=1e-4)


def test_cosine_similarities_match_torch(runtime, loaded, hf):
    _lm, run, _ = loaded
    layer, pos = 4, 6
    post = hf.hidden_states[layer + 1][0]  # HF hidden_states[l+1] = output of block l
    prev = hf.hidden_states[layer][0]
    ref_tokens = torch.nn.functional.cosine_similarity(post, post[pos][None], dim=-1)
    got = T.similarity_values(runtime, run, "hook_resid_post", layer, pos, "tokens")
    np.testing.assert_allclose(got.numpy(), ref_tokens.numpy(), atol=1e-4)
    ref_prev = torch.nn.functional.cosine_similarity(post, prev, dim=-1)
    got_prev = T.similarity_values(runtime, run, "hook_resid_post", layer, pos, "prev_layer")
    np.testing.assert_allclose(got_prev.numpy(), ref_prev.numpy(), atol=1e-4)
    # previous residual of the MLP output is the residual after attention (resid_mid)
    mid, mlp = run.act(f"blocks.{layer}.hook_resid_mid"), run.act(f"blocks.{layer}.hook_mlp_out")
    assert torch.allclose(mid + mlp, post, atol=1e-3)
    ref_res = torch.nn.functional.cosine_similarity(mlp, mid, dim=-1)
    got_res = T.similarity_values(runtime, run, "hook_mlp_out", layer, pos, "prev_residual")
    np.testing.assert_allclose(got_res.numpy(), ref_res.numpy(), atol=1e-4)
    with pytest.raises(Exception, match="Layer 0 has no previous layer"):
        T.similarity_values(runtime, run, "hook_resid_post", 0, pos, "prev_layer")


def test_activation_sum_and_dimension(runtime, loaded, hf):
    _lm, run, _ = loaded
    post = hf.hidden_states[3][0]
    np.testing.assert_allclose(T.activation_sums(runtime, run, "hook_resid_post", 2).numpy(),
                               post.abs().sum(-1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(T.dimension_values(runtime, run, "hook_resid_post", 2, 17).numpy(), post[:, 17].numpy(),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match=r"0\.\.575"):
        T.dimension_values(runtime, run, "hook_resid_post", 2, 576)


def test_iqr_outliers_hand_example():
    # negatives: [-1,-2,-3,-4,-100] Q1=-4, Q3=-2, IQR=2 -> fences [-10, 4]: -100 is an outlier.
    # positives: [1,2,3,4,5,50] Q1=2.25, Q3=4.75, IQR=2.5 -> upper fence 12.25: 50 is an outlier.
    x = torch.tensor([-1.0, -2, -3, -4, -100, 0, 1, 2, 3, 4, 5, 50])
    mask = iqr_outliers(x)
    assert mask.nonzero().flatten().tolist() == [4, 11]
    # one fence over both signs would miss -100's sign structure: check a value inside only the joint fence
    y = torch.tensor([-30.0, -31, -32, -33, 1, 2, 3, 4])  # per sign: nothing is an outlier
    assert iqr_outliers(y).sum() == 0
    # row-wise on [T, d]
    both = iqr_outliers(torch.stack([x, x.flip(0)]))
    assert both[0].nonzero().flatten().tolist() == [4, 11] and both[1].nonzero().flatten().tolist() == [0, 7]
    assert iqr_outliers(torch.tensor([1.0, 2, 300])).sum() == 0  # fewer than 4 values per sign


def test_normalization_modes():
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    n = normalize(x, "normalized")
    np.testing.assert_allclose((n * n).mean(-1).numpy(), [1.0, 1.0], rtol=1e-6)
    v = torch.tensor([[1.0, 2, 3, 4, 5, 500, -1, -2, -3, -4]])
    no = normalize(v, "no_outliers")
    assert no[0, 5] == 0  # the outlier is excluded
    kept = v[0, [0, 1, 2, 3, 4, 6, 7, 8, 9]]
    np.testing.assert_allclose(no[0, 0].item(), 1.0 / kept.pow(2).mean().sqrt().item(), rtol=1e-6)
    assert torch.equal(normalize(x, "none"), x)


def test_histogram_median_token_and_dimension_line(runtime, loaded):
    _lm, run, _ = loaded
    x = T.site_matrix(runtime, run, "hook_resid_post", 10)
    med = median_token(x)
    sums = x.abs().sum(-1)
    assert int((sums < sums[med]).sum()) == (run.n_tokens - 1) // 2
    h = histogram(x, 3, dim=42)
    assert sum(h.median_counts) == x.shape[1] == sum(h.selected_counts)
    assert h.median_index == med and h.dim_value == pytest.approx(float(x[3, 42]))
    assert h.outlier_dims == sorted(iqr_outliers(x[3]).nonzero().flatten().tolist(),
                                    key=lambda d: -abs(float(x[3, d])))


def _direct_qk(lm, hf, layer):
    """Pre-rotary q and k straight from HF's modules (independent of the capture hooks)."""
    block = lm.model.model.layers[layer]
    with torch.inference_mode():
        h = block.input_layernorm(hf.hidden_states[layer][0])
        dh = lm.info.d_head
        q = block.self_attn.q_proj(h).view(h.shape[0], -1, dh)
        k = block.self_attn.k_proj(h).view(h.shape[0], -1, dh)
    return q, k


def test_rope_modes_against_hf(loaded, hf):
    lm, run, _ = loaded
    spec = attn_spec(lm)
    layer, head = 5, 4
    kv = spec.kv_head(head)
    pattern = hf.attentions[layer][0, head]  # HF eager attention weights [T, T]
    full = head_values(run, spec, layer, head, "full")
    np.testing.assert_allclose(full.numpy(), pattern.numpy(), atol=1e-5)
    applied = head_values(run, spec, layer, head, "applied")
    np.testing.assert_allclose(torch.softmax(torch.nan_to_num(applied, nan=-torch.inf), -1).numpy(),
                               pattern.numpy(), atol=1e-5)
    q, k = _direct_qk(lm, hf, layer)
    ref = (q[:, head] @ k[:, kv].T) * spec.scaling
    not_applied = head_values(run, spec, layer, head, "not_applied")
    causal = torch.tril(torch.ones_like(ref, dtype=torch.bool))
    np.testing.assert_allclose(not_applied[causal].numpy(), ref[causal].numpy(), rtol=1e-4, atol=1e-4)
    assert torch.isnan(not_applied[~causal]).all()
    assert not torch.allclose(applied[causal], not_applied[causal], atol=1e-2)  # RoPE changes the scores
    # rows, columns ("opposite") and the mean over heads against HF's pattern
    pos = 9
    row = attention_values(run, spec, layer, head, pos, "full", "from")
    np.testing.assert_allclose(row[: pos + 1].numpy(), pattern[pos, : pos + 1].numpy(), atol=1e-5)
    assert torch.isnan(row[pos + 1:]).all()
    col = attention_values(run, spec, layer, head, pos, "full", "to")
    np.testing.assert_allclose(col[pos:].numpy(), pattern[pos:, pos].numpy(), atol=1e-5)
    assert torch.isnan(col[:pos]).all()
    mean = attention_values(run, spec, layer, None, pos, "full", "from")
    np.testing.assert_allclose(mean[: pos + 1].numpy(), hf.attentions[layer][0, :, pos, : pos + 1].mean(0).numpy(),
                               atol=1e-5)


ARGS = ["predictions", "hook_resid_post", 3, 0, False, "from", "full", "tokens", 0, "none"]


def test_no_model_rerun_on_interactions(cb, loaded):
    lm, _run, meta = loaded
    before = lm.forward_count
    for tool in T.TOOLS:
        for layer, head, mean, rope, direction in ((0, 0, False, "full", "from"), (7, 3, True, "applied", "to"),
                                                   (29, 8, False, "not_applied", "from")):
            for sim in T.SIMILARITIES if tool == "similarity" else ("tokens",):
                for norm in ("none", "no_outliers"):
                    args = [tool, "hook_mlp_out", layer, head, mean, direction, rope, sim, 5, norm]
                    try:
                        out = cb.paint(meta, {"s": 0, "i": 4}, *args, *STATES)
                        assert out[0]["values"]
                    except InputError as exc:
                        assert (layer == 0 and sim == "prev_layer") or (tool == "edit" and "edit list" in str(exc)), exc
    for tab in ("token", "hist", "scatter", "keys"):
        for kind in T.SITE_KINDS:
            cb.panel(meta, {"s": 0, "i": 2}, tab, kind, 12, "normalized", 3, "1, 40", *STATES)
    cb.vector_file(meta, {"s": 0, "i": 2}, "npy", "mlp.hook_post", 4, "none", *STATES)
    assert cb.load_samples(*STATES, "predictions")[1]["lengths"]  # re-opening the same text: cached
    assert lm.forward_count == before


def test_paint_values_and_payload(runtime, cb, loaded):
    _lm, run, meta = loaded
    out = cb.paint(meta, {"s": 0, "i": 6}, *ARGS, *STATES)
    data = out[0]
    assert len(data["values"]) == 1 and len(data["values"][0]) == run.n_tokens
    assert data["sel"] == [0, 6] and (data["lo"], data["mid"], data["hi"]) == (0.0, 0.0, 1.0)
    stats = T.next_token_stats(runtime, run)
    assert data["values"][0][6] == pytest.approx(stats.true_prob[6], rel=1e-3)
    assert data["values"][0][-1] is None
    # a token/layer change sends only the values and the visible panel
    changed = cb.paint(meta, {"s": 0, "i": 7}, "attention", "hook_resid_post", 4, 0, False, "from", "full",
                       "tokens", 0, "none", *STATES)
    panel = cb.panel(meta, {"s": 0, "i": 7}, "token", "hook_resid_post", 4, "none", 0, "", *STATES)
    size = len(to_json([changed, panel]).encode())  # what Dash sends
    assert 0 < size < 300_000
    assert changed[0]["values"][0][8] is None and changed[0]["values"][0][0] is not None


def test_download_vector_roundtrip(cb, loaded):
    _lm, run, meta = loaded
    payload = cb.vector_file(meta, {"s": 0, "i": 3}, "npy", "mlp.hook_post", 4, "none", *STATES)
    import base64

    vec = np.load(io.BytesIO(base64.b64decode(payload["content"])))
    np.testing.assert_allclose(vec, run.act("blocks.4.mlp.hook_post")[3].numpy(), rtol=1e-6)
    assert payload["filename"].endswith(".npy") and vec.shape == (1536,)
    csv = cb.vector_file(meta, {"s": 0, "i": 3}, "csv", "hook_resid_post", 4, "none", *STATES)
    lines = csv["content"].splitlines()
    assert lines[0] == "dim,value" and len(lines) == 577
    assert float(lines[11].split(",")[1]) == pytest.approx(float(run.act("blocks.4.hook_resid_post")[3, 10]), rel=1e-6)


def test_several_samples_share_one_scale(cb, runtime, smollm2):
    sid = runtime.samples.list("prose")[0].sample_id
    short = [s.sample_id for s in sorted(runtime.samples.list("prose"), key=lambda s: len(s.text))[:2]]
    out = cb.load_samples(EMBEDDED_LM, short, "", "predictions")
    meta = out[1]
    assert len(meta["lengths"]) == 2
    paint = cb.paint(meta, {"s": 1, "i": 2}, "similarity", "hook_resid_post", 6, 0, False, "from", "full", "tokens",
                     0, "none", EMBEDDED_LM, short, "")[0]
    assert [len(v) for v in paint["values"]] == meta["lengths"]
    assert paint["values"][1][2] == pytest.approx(1.0, abs=1e-3)  # the selected token itself
    assert sid  # library is not empty


def test_bad_input_messages(cb, loaded):
    """Every bad value raises an InputError naming its bound (the page shows it beside the field or in its
    alert, and keeps the last good view)."""
    _lm, _run, meta = loaded
    with pytest.raises(InputError, match="^The text is empty: type or pick a sample.$"):
        cb.load_samples(EMBEDDED_LM, ["user"], "   ", "predictions")
    with pytest.raises(InputError, match="limit is 1,024"):
        cb.load_samples(EMBEDDED_LM, ["user"], "word " * 1500, "predictions")
    with pytest.raises(GlassboxError, match="not in this dashboard's model list"):
        cb.load_samples("no/such-model", ["user"], TEXT, "predictions")
    with pytest.raises(InputError, match="^No sample is open"):
        cb.load_samples(EMBEDDED_LM, [], TEXT, "predictions")
    with pytest.raises(InputError, match="^Layer must be a whole number from 0 to 29; got 30.$") as bad_layer:
        cb.paint(meta, {"s": 0, "i": 1}, "attention", "hook_resid_post", 30, 0, False, "from", "full", "tokens", 0,
                 "none", *STATES)
    assert bad_layer.value.field == "tokens-layer"
    with pytest.raises(InputError, match="from 0 to 8") as bad_head:
        cb.paint(meta, {"s": 0, "i": 1}, "attention", "hook_resid_post", 3, 9, False, "from", "full", "tokens", 0,
                 "none", *STATES)
    assert bad_head.value.field == "tokens-head"
    with pytest.raises(InputError, match="from 0 to 575"):
        cb.paint(meta, {"s": 0, "i": 1}, "dimension", "hook_resid_post", 3, 0, False, "from", "full", "tokens", 9999,
                 "none", *STATES)
    with pytest.raises(InputError, match="Highlight dims must be a whole number from 0 to 575; got 900") as bad_hl:
        cb.panel(meta, {"s": 0, "i": 1}, "scatter", "hook_resid_post", 3, "none", 0, "5, 900", *STATES)
    assert bad_hl.value.field == "tokens-highlight"
    # the page keeps working afterwards
    assert cb.paint(meta, {"s": 0, "i": 1}, *ARGS, *STATES)[0]["values"]


def test_light_profile_for_big_runs(smollm2):
    info = smollm2.info
    assert T.page_kinds(info, 1024, 2 * 1024**3) == T.SITE_KINDS
    assert T.page_kinds(info, 1024, 200 * 1024**2) == T.CORE_KINDS
    assert T.needed_kinds("similarity", "hook_mlp_out", "prev_residual") == {"hook_mlp_out", "hook_resid_mid"}


def test_url_state_roundtrip(cb):
    state = cb.initial_state({"tool": "attention", "layer": "7", "head": "mean", "rope": "not_applied",
                              "dir": "to", "t": "12", "norm": "bogus"})
    assert state["tool"] == "attention" and state["layer"] == 7 and state["head"] is None
    assert state["rope"] == "not_applied" and state["direction"] == "to" and state["t"] == 12
    assert state["norm"] == "none"


def test_encoder_model_attention_without_predictions(cb, minilm):
    from analysis.settings import EMBEDDED_ENCODER

    states = [EMBEDDED_ENCODER, ["user"], TEXT]
    out = cb.load_samples(*states, "predictions")
    meta = out[1]
    assert meta["causal"] is False and meta["n_layers"] == 6 and meta["encoder"] is True
    assert out[2] == "attention"  # an encoder opens on a tool it has
    with pytest.raises(InputError, match="encoder"):
        cb.paint(meta, {"s": 0, "i": 3}, *ARGS, *states)
    att = cb.paint(meta, {"s": 0, "i": 3}, "attention", "hook_resid_post", 2, 1, False, "from", "full", "tokens", 0,
                   "none", *states)[0]
    row = att["values"][0]
    assert all(v is not None for v in row)  # bidirectional: every token has a weight
    assert sum(row) == pytest.approx(1.0, abs=1e-3)
    panel = cb.panel(meta, {"s": 0, "i": 3}, "token", "hook_resid_post", 2, "none", 0, "", *states)
    assert "no next-token predictions" in str(panel)


def test_edit_effect_tool_and_clean_edited_panel_by_hand(runtime, cb, loaded):
    """With the shared edit list on: the edit-effect strip is KL(clean || edited) at each token, computed
    here by hand from an HF forward with the same hook; the token panel shows both top-5s and the deltas."""
    lm, run, meta = loaded
    store = {"edits": "neuron:L5.N10=20", "src": ""}
    out = cb.paint(meta, {"s": 0, "i": 6}, "edit", "hook_resid_post", 0, 0, False, "from", "full", "tokens", 0,
                   "none", *STATES, store)
    from analysis.sites import arch_for, get_module

    spec = arch_for(lm.model)
    down = get_module(get_module(lm.model, spec.layers)[5], spec.mlp_down)

    def hook(_module, args):
        x = args[0].clone()
        x[..., 10] = 20.0
        return (x,)

    handle = down.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            edited_logits = lm.model(input_ids=torch.tensor([run.token_ids]), use_cache=False).logits[0]
    finally:
        handle.remove()
    logp, logq = run.logits.float().log_softmax(-1), edited_logits.float().log_softmax(-1)
    by_hand = (logp.exp() * (logp - logq)).sum(-1).numpy()
    assert np.allclose(out[0]["values"][0], by_hand, atol=2e-4, rtol=1e-3)
    assert "KL(clean ‖ edited)" in out[0]["label"] and max(by_hand) > 0.01
    panel = str(cb.panel(meta, {"s": 0, "i": 6}, "token", "hook_resid_post", 0, "none", 0, "", *STATES, 0, False,
                         "full", store))
    assert "'Clean'" in panel and "'Edited'" in panel and f"KL(clean ‖ edited) here {by_hand[6]:.4f}" in panel
    true = run.token_ids[7]
    clean_loss, edited_loss = float(-logp[6, true]), float(-logq[6, true])
    assert f"{clean_loss:.3f} → {edited_loss:.3f}" in panel
    before = lm.forward_count
    cb.paint(meta, {"s": 0, "i": 9}, "edit", "hook_resid_post", 0, 0, False, "from", "full", "tokens", 0, "none",
             *STATES, store)
    assert lm.forward_count == before  # a token change with the same edits: cached edited run
    with pytest.raises(InputError, match="layer 40 is outside 0..29"):
        cb.paint(meta, {"s": 0, "i": 6}, "edit", "hook_resid_post", 0, 0, False, "from", "full", "tokens", 0,
                 "none", *STATES, {"edits": "neuron:L40.N1"})


def test_neurons_and_features_here_and_the_focus_links(runtime, cb, loaded):
    """The selected token as a focus: the top MLP neurons over every layer and the embedded SAE's top features
    there, by hand from the run; the links carry the model, sample and position."""
    from analysis.features import load_sae

    lm, run, meta = loaded
    pos = 9
    here = T.neurons_here(runtime, run, pos, k=5)
    stacked = torch.stack([run.act(f"blocks.{layer}.mlp.hook_post")[pos] for layer in range(lm.info.n_layers)])
    values, order = stacked.flatten().topk(5)
    assert [(u.layer, u.unit) for u in here] == [(int(i) // lm.info.d_mlp, int(i) % lm.info.d_mlp) for i in order]
    assert [u.value for u in here] == pytest.approx(values.tolist(), rel=1e-6)
    sae = load_sae(runtime, "embedded", EMBEDDED_LM)
    feats = T.features_here(runtime, run, pos, k=4)
    expected = sae.encode(run.act(sae.site)[pos:pos + 1])[0].topk(4)
    assert [f.unit for f in feats] == expected.indices.tolist()
    assert [f.value for f in feats] == pytest.approx(expected.values.tolist(), rel=1e-5)
    sample = runtime.samples.default_sample_id()
    panel = str(cb.focus_panel(EMBEDDED_LM, [sample], 0, run, pos))
    assert "focus=9" in panel and "start=0" in panel and "/circuits?" in panel and "pos=9" in panel
    assert f"layer={here[0].layer}&neuron={here[0].unit}" in panel and f"feature={feats[0].unit}" in panel
    assert "need a library sample" in str(cb.focus_panel(EMBEDDED_LM, ["user"], 0, run, pos))
