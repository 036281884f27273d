"""Features page science on the real embedded SmolLM2 with a random sae-lens SAE saved to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis.errors import GlassboxError
from analysis.features import (
    SAEError,
    TreeOptions,
    VectorOptions,
    build_tree,
    check_fit,
    embedding_stats,
    feature_record,
    feature_stats,
    generate_steered,
    ghost_vector,
    hook_to_site,
    load_sae,
    logit_effects,
    scan_corpus,
    search_features,
    text_activations,
    token_list,
)
from analysis.features.scan import corpus_windows
from analysis.features.tree import prompt_ids
from analysis.settings import EMBEDDED_LM
from tests.helpers import make_sae

TEXT = "The cat sat on the mat. Paris is the capital of France, and Rome is the capital of Italy."


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory) -> str:
    return make_sae(tmp_path_factory.mktemp("sae") / "rand")


@pytest.fixture(scope="module")
def sae(sae_dir, runtime):
    return load_sae(runtime, sae_dir, EMBEDDED_LM)


def test_hook_names_map_to_capture_sites():
    assert hook_to_site("model.layers.15") == "blocks.15.hook_resid_post"
    assert hook_to_site("gpt_neox.layers.3") == "blocks.3.hook_resid_post"
    assert hook_to_site("transformer.h.8") == "blocks.8.hook_resid_post"
    assert hook_to_site("model.layers.2.mlp") == "blocks.2.hook_mlp_out"
    assert hook_to_site("blocks.8.hook_resid_pre") == "blocks.8.hook_resid_pre"
    with pytest.raises(SAEError, match="no matching capture site"):
        hook_to_site("encoder.weird")


def test_activations_equal_sae_lens_encode_of_hf_hidden_state(runtime, smollm2, sae):
    """Ours (capture site + LoadedSAE.encode) == sae_lens SAE.encode on HF's own hidden_states[16]."""
    acts = text_activations(runtime, EMBEDDED_LM, sae, TEXT)
    ids = torch.tensor([acts.token_ids])
    with torch.inference_mode():
        hidden = smollm2.model(ids, output_hidden_states=True).hidden_states[16][0]
        reference = sae.sae.encode(hidden.float())
    assert acts.feats.shape == (len(acts.token_ids), 96)
    assert (reference > 0).any()
    torch.testing.assert_close(acts.feats, reference, atol=1e-4, rtol=1e-4)


def test_transformerlens_trained_sae_sees_the_centred_residual_stream(runtime, smollm2, tmp_path, settings):
    """TransformerLens centres the residual stream (center_writing_weights): such an SAE encodes HF's
    residual minus its per-token mean; an HF-trained SAE does not."""
    tl = load_sae(runtime, make_sae(tmp_path / "tl", model_class="HookedTransformer"))
    hf = load_sae(runtime, make_sae(tmp_path / "hf", model_class="AutoModelForCausalLM"))
    assert tl.center and not hf.center
    x = runtime.run(EMBEDDED_LM, TEXT, [tl.site]).act(tl.site)
    with torch.inference_mode():
        expected = tl.sae.encode(x - x.mean(-1, keepdim=True))
    torch.testing.assert_close(text_activations(runtime, EMBEDDED_LM, tl, TEXT).feats, expected)


def test_changing_feature_never_reruns(runtime, smollm2, sae):
    text_activations(runtime, EMBEDDED_LM, sae, TEXT + " again")
    before = smollm2.forward_count
    for _ in range(3):
        text_activations(runtime, EMBEDDED_LM, sae, TEXT + " again").feature(5)
    assert smollm2.forward_count == before


def test_mismatched_sae_gives_clear_message(runtime, tmp_path, smollm2):
    small = load_sae(runtime, make_sae(tmp_path / "d384", d_in=384, model_id=None))
    with pytest.raises(SAEError, match="d_model = 576"):
        check_fit(small, smollm2)
    other = load_sae(runtime, make_sae(tmp_path / "gpt2", model_name="gpt2", model_id=None))
    with pytest.raises(SAEError, match="trained on 'gpt2'"):
        check_fit(other, smollm2)
    deep = load_sae(runtime, make_sae(tmp_path / "deep", hook="blocks.40.hook_resid_post", model_id=None))
    with pytest.raises(SAEError, match="30 layers"):
        check_fit(deep, smollm2)


def test_missing_embedded_sae_says_make_sae(tmp_path, monkeypatch):
    from analysis.features import sae as sae_module
    from analysis.runtime import Runtime
    from analysis.settings import Settings

    monkeypatch.setattr(sae_module, "SHIPPED_SAE", tmp_path / "no-shipped-sae")  # a checkout without the artifact
    bare = Runtime(Settings(cache_dir=str(tmp_path)))
    with pytest.raises(SAEError, match="make sae"):
        load_sae(bare, "embedded")
    with pytest.raises(GlassboxError, match="release:sae_id"):
        load_sae(bare, "not-a-thing")


def _notebook_p1(E: np.ndarray) -> np.ndarray:
    """p1 as the original notebook computes it (scikit-learn's PCA, its sign convention), by hand: the top
    eigenvector of the covariance, signed so its largest |entry| is positive (sklearn's svd_flip)."""
    centred = E - E.mean(0)
    vec = np.linalg.eigh(centred.T @ centred)[1][:, -1]
    return vec * np.sign(vec[np.argmax(np.abs(vec))])


def test_token_list_ratios_match_numpy(runtime, smollm2, sae):
    options = VectorOptions(kind="encoder", centroid_offset=True, scale=3.8, pca_weight=0.5, exponent=1.4)
    result = token_list(runtime, smollm2, sae, 7, options, top=100)
    E = smollm2.model.get_input_embeddings().weight.detach().double().numpy()
    c = E.mean(0)
    v = sae.sae.W_enc.detach().double().numpy()[:, 7]
    pc1 = _notebook_p1(E)
    g = c + 3.8 * (0.5 * v / np.linalg.norm(v) + 0.5 * pc1)  # the notebook's g = c + s((1-w)v/|v| + w p1)
    cos = lambda a, B: (B @ a) / (np.linalg.norm(B, axis=1) * np.linalg.norm(a))  # noqa: E731
    ratio = (1 - cos(g, E)) ** 1.4 / (1 - cos(c, E))
    expected = np.argsort(ratio)[:100]
    np.testing.assert_allclose(result.ratio, ratio[result.token_ids], rtol=1e-4)
    np.testing.assert_allclose(sorted(result.ratio), np.sort(ratio)[:100], rtol=1e-4)
    assert len(set(result.token_ids[:90]) & set(expected.tolist())) >= 88
    assert len(result.tokens) == 100


def test_ghost_token_is_the_notebooks_formula(runtime, smollm2, sae):
    """g = c + s((1 - w) v/|v| + w p1) (offset on) or s(...) (off), s absolute, default s = rho, for several
    (vector kind, offset, s, w) settings, against a hand computation."""
    E = smollm2.model.get_input_embeddings().weight.detach().double().numpy()
    c = E.mean(0)
    rho = np.linalg.norm(E - c, axis=1).mean()
    p1 = _notebook_p1(E)
    stats = embedding_stats(runtime, smollm2)
    assert stats.rho == pytest.approx(rho, rel=1e-5)
    np.testing.assert_allclose(stats.pc1.numpy(), p1, atol=1e-4)
    assert float(stats.pc1.norm()) == pytest.approx(1.0, abs=1e-5)
    for kind, offset, s, w in (("decoder", True, None, 0.0), ("encoder", True, 3.8, 0.3), ("decoder", False, 7.9, 1.0),
                               ("encoder", False, None, 0.5), ("decoder", True, 2.0, -0.5)):
        v = (sae.sae.W_dec.detach().double().numpy()[9] if kind == "decoder"
             else sae.sae.W_enc.detach().double().numpy()[:, 9])
        scale = rho if s is None else s
        direction = (1 - w) * v / np.linalg.norm(v) + w * p1
        expected = (c if offset else 0) + scale * direction
        got = ghost_vector(runtime, smollm2, sae, 9, VectorOptions(kind=kind, centroid_offset=offset, scale=s,
                                                                       pca_weight=w)).double().numpy()
        np.testing.assert_allclose(got, expected, atol=2e-4)
    default = ghost_vector(runtime, smollm2, sae, 9, VectorOptions()).double().numpy()
    assert np.linalg.norm(default - c) == pytest.approx(rho, rel=1e-5)  # a typical token's distance
    assert TreeOptions().cutoff == 1e-5


def test_first_principal_component_is_the_same_in_every_process(smollm2):
    """p1 from scikit-learn's exact solver: two fresh processes give bit-identical vectors."""
    import subprocess
    import sys

    script = ("import numpy as np, torch; from analysis.features import first_principal_component; "
              "from safetensors.torch import load_file; import sys; "
              "E = load_file(sys.argv[1])['model.embed_tokens.weight'].float().numpy(); "
              "sys.stdout.write(first_principal_component(E).tobytes().hex())")
    weights = str(_embedded_weights())
    runs = [subprocess.run([sys.executable, "-c", script, weights], capture_output=True, text=True, check=True,
                           timeout=300).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 576 * 8


def _embedded_weights():
    from analysis.embedded import smollm2_dir
    from analysis.runtime import get_runtime

    return smollm2_dir(get_runtime().settings.cache_dir) / "model.safetensors"


def test_logit_effects_are_decoder_times_unembedding(smollm2, sae):
    effects = logit_effects(smollm2, sae, 3, k=5)
    W_U = smollm2.model.lm_head.weight.detach().float() * smollm2.model.model.norm.weight.detach().float()
    direct = W_U @ sae.sae.W_dec.detach()[3]
    assert [t.token_id for t in effects.positive] == torch.topk(direct, 5).indices.tolist()
    assert [t.token_id for t in effects.negative] == torch.topk(-direct, 5).indices.tolist()
    assert effects.positive[0].logit == pytest.approx(float(direct.max()), rel=1e-5)
    assert effects.negative[0].logit == pytest.approx(float(direct.min()), rel=1e-5)


def test_definition_tree_probabilities_are_products_of_next_token_probabilities(runtime, smollm2, sae):
    weight_before = smollm2.model.get_input_embeddings().weight.detach().clone()
    options = TreeOptions(top_k=3, cutoff=1e-3, max_depth=4)
    vector = VectorOptions()
    tree = build_tree(runtime, smollm2, sae, 11, vector, options)
    assert torch.equal(weight_before, smollm2.model.get_input_embeddings().weight)  # never modified
    assert len(tree.nodes) > 4
    ids, ghost_pos = prompt_ids(smollm2, options.prompt)
    g = ghost_vector(runtime, smollm2, sae, 11, vector)
    deepest = max(tree.nodes, key=lambda n: (n.depth, n.cum_prob))
    for node in (tree.nodes[1], deepest):
        path = tree.path_ids(node.id)
        full = torch.tensor([ids + path])
        with torch.inference_mode():
            emb = smollm2.model.get_input_embeddings()(full)
            emb[0, ghost_pos] = g
            probs = torch.softmax(smollm2.model(inputs_embeds=emb).logits[0].double(), -1)
        product = 1.0
        for step, tid in enumerate(path):
            product *= float(probs[len(ids) - 1 + step, tid])
        assert node.cum_prob == pytest.approx(product, rel=1e-3)
        assert node.cum_prob >= options.cutoff
    placeholder = ids[ghost_pos]
    assert all(n.token_id != placeholder for n in tree.nodes[1:])
    assert all(len(n.children) <= 3 for n in tree.nodes)


def test_steering_zero_strength_equals_unsteered_and_strong_add_changes_text(smollm2, sae):
    same = generate_steered(smollm2, sae, 5, "The weather today is", mode="add", strength=0.0, max_new_tokens=4)
    assert same.steered == same.unsteered and same.steered
    strong = generate_steered(smollm2, sae, 5, "The weather today is", mode="add", strength=60.0, max_new_tokens=4)
    assert strong.unsteered == same.unsteered
    assert strong.steered != strong.unsteered
    clamp = generate_steered(smollm2, sae, 5, "The weather today is", mode="clamp", strength=40.0, max_new_tokens=4)
    assert clamp.steered_acts and min(clamp.steered_acts) > max(clamp.unsteered_acts)


def test_corpus_scan_matches_direct_encode(runtime, smollm2, sae):
    texts = runtime.samples.training_text(6000)
    windows = corpus_windows(smollm2, texts, 96, context=32)
    scan = scan_corpus(smollm2, sae, windows, batch=2)
    with torch.inference_mode():
        hidden = smollm2.model(torch.from_numpy(windows.astype(np.int64)), output_hidden_states=True).hidden_states[16]
        feats = sae.sae.encode(hidden.float())[:, 1:].reshape(-1, 96).numpy()  # position 0 (the sink) is skipped
    from analysis.io import RUN_LIKE, pack_rows

    assert windows.tolist() == pack_rows(smollm2.tokenizer, texts, 4 * 32, 32, RUN_LIKE)  # the one packer
    np.testing.assert_allclose(scan.density(), (feats > 0).mean(0), atol=1e-9)
    f = int(np.argmax((feats > 0).sum(0)))
    stats = feature_stats(smollm2, scan, f, n_top=3)
    assert stats.top[0].value == pytest.approx(float(feats[:, f].max()), rel=1e-4)
    assert stats.top[0].acts[stats.top[0].center] == pytest.approx(stats.top[0].value)
    assert sum(stats.hist_counts) == int((feats[:, f] > 0).sum())
    assert stats.bins[0][0] >= stats.bins[-1][0]  # highest bin first


def test_feature_record_and_search(runtime, smollm2, sae_dir):
    record = feature_record(runtime, EMBEDDED_LM, sae_dir, 3, text=TEXT)
    assert record["sae"]["site"] == "blocks.15.hook_resid_post"
    assert record["feature"] == 3 and len(record["logit_effects"]["positive"]) == 10
    assert len(record["text"]["activations"]) == len(record["text"]["tokens"])
    json.dumps(record)
    token = record["logit_effects"]["positive"][0]["token"]
    shown, hits = search_features(runtime, EMBEDDED_LM, sae_dir, token)
    assert any(h.feature == 3 and h.in_logit_effects for h in hits)
    assert [r["feature"] for r in record["similar_by_decoder"]] and 3 not in [r["feature"] for r in record["similar_by_decoder"]]
    with pytest.raises(GlassboxError, match="from 0 to 95"):
        feature_record(runtime, EMBEDDED_LM, sae_dir, 96)


def test_feature_edit_effect_of_an_ablation_by_hand(runtime, smollm2):
    """The Features page's clean-vs-edited line: the feature's activations on the text with its own ablation
    on, over the tokens the SAE was trained on, against the edited run's site re-encoded by hand."""
    from analysis.edits import parse_edits, resolve_edits
    from analysis.features import feature_edit_effect, load_sae, text_activations

    sae = load_sae(runtime, "embedded", EMBEDDED_LM)
    text = "Python supports string and bytes literals and various numeric literals."
    clean = text_activations(runtime, EMBEDDED_LM, sae, text)
    feature = clean.top_features(1)[0][0]
    edits = resolve_edits(runtime, EMBEDDED_LM, parse_edits(f"feature[embedded]:F{feature}"),
                          sae=lambda ref: load_sae(runtime, ref, EMBEDDED_LM))
    effect = feature_edit_effect(runtime, EMBEDDED_LM, sae, text, feature, edits)
    edited_site = runtime.run(EMBEDDED_LM, text, [sae.site], edits=edits).act(sae.site)
    keep = ~torch.tensor(clean.outside)
    by_hand = sae.encode(edited_site)[:, feature][keep]
    assert effect["edited_max"] == pytest.approx(float(by_hand.max()), rel=1e-5)
    assert effect["clean_max"] == pytest.approx(clean.top_features(1)[0][1], rel=1e-5)
    assert effect["edited_max"] < effect["clean_max"] and effect["edits"] == f"feature[embedded]:F{feature}"
