"""Lens grids against tuned-lens itself (PredictionTrajectory), on the real embedded SmolLM2."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from analysis.errors import InputError, ModelLoadError
from analysis.lens import fresh_tuned_lens, load_tuned_lens, logit_lens, resolve_lens_source, save_lens
from analysis.lens.grid import lens_difference, lens_grid, lens_run
from analysis.settings import EMBEDDED_LM

TEXT = "The quick brown fox jumps over the lazy dog, then"  # short: tuned-lens keeps L x T x V in numpy
TOL = 1e-4


@pytest.fixture(scope="module")
def tuned_dir(runtime, smollm2, tmp_path_factory):
    """A tuned lens with random (non-identity) translators, saved in tuned-lens format."""
    lens = fresh_tuned_lens(runtime, smollm2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in lens.layer_translators:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.02)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.1)
    return save_lens(lens, tmp_path_factory.mktemp("lens") / "smollm2")


@pytest.fixture(scope="module")
def trajs(runtime, smollm2, tuned_dir):
    """tuned-lens's own trajectories (logit and tuned lens) of TEXT, built once."""
    from tuned_lens.nn.lenses import TunedLens

    _, run = lens_run(runtime, EMBEDDED_LM, TEXT)
    tuned = TunedLens.from_model_and_pretrained(smollm2.model, str(tuned_dir))
    return {"logit": _trajectory(smollm2, logit_lens(runtime, smollm2), run.token_ids),
            "tuned": _trajectory(smollm2, tuned, run.token_ids)}


def _trajectory(lm, lens, ids):
    from tuned_lens.plotting import PredictionTrajectory

    targets = ids[1:] + [0]
    with lm.lock:
        return PredictionTrajectory.from_lens_and_model(lens, lm.model, ids, tokenizer=lm.tokenizer, targets=targets)


def _compare(grid, traj):
    n = len(grid.tokens)
    assert traj.log_probs.shape[:2] == (len(grid.layer_labels), n)
    np.testing.assert_allclose(grid.stats["entropy"], traj.entropy().stats, atol=TOL)
    # KL at the embedding reaches 60-180 nats; tuned-lens sums 49k float32 terms there, so the
    # agreement is 1e-4 absolute or relative (test_kl_closer_to_float64 shows ours is the closer one)
    np.testing.assert_allclose(grid.stats["kl_final"], traj.forward_kl().stats, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(grid.stats["max_prob"], traj.max_probability().stats, atol=TOL)
    # the last position has no true next token (NaN here; tuned-lens got a dummy target)
    np.testing.assert_allclose(grid.stats["cross_entropy"][:, :-1], traj.cross_entropy().stats[:, :-1],
                               atol=TOL, rtol=TOL)
    ours_rank, their_rank = grid.stats["rank"][:, :-1], traj.rank().stats[:, :-1]
    # ranks agree exactly except where the target's log-prob ties others in tuned-lens's float32
    # log-probs (its argsort then breaks the tie by index)
    lp = np.asarray(traj.log_probs)[:, :-1]
    tgt = np.asarray(traj.targets)[:-1]
    lp_t = np.take_along_axis(lp, np.broadcast_to(tgt[None, :, None], (*lp.shape[:2], 1)), -1)
    ties = (lp == lp_t).sum(-1)
    assert (np.abs(ours_rank - their_rank) <= ties - 1).all()
    assert (ours_rank == their_rank).mean() > 0.98
    assert np.isnan(grid.stats["rank"][:, -1]).all()
    top = np.asarray(traj.log_probs).argmax(-1)
    tok = grid.top_k_tokens
    assert [[cell[0] for cell in row] for row in tok] == grid.top_tokens
    # top-1 ids agree except where the two best logits tie within float noise
    probs = np.sort(np.exp(traj.log_probs), axis=-1)[..., -2:]
    clear = (probs[..., 1] - probs[..., 0]) > 1e-4
    ours = np.array([[lensed for lensed in row] for row in grid.top_tokens])
    theirs = np.vectorize(lambda i: grid_decode(i), otypes=[object])(top)
    assert (ours[clear] == theirs[clear]).all()


_TOKENIZER = {}


def grid_decode(i):
    """The page's one token decoder (byte pieces as <0xNN>): what the grid's cells show."""
    return _TOKENIZER["tok"].decode([int(i)])[0]


def test_logit_lens_matches_tuned_lens(runtime, smollm2, trajs):
    _TOKENIZER["tok"] = smollm2
    grid = lens_grid(runtime, EMBEDDED_LM, TEXT, lens="logit", statistic="entropy", width=64)
    _, run = lens_run(runtime, EMBEDDED_LM, TEXT)
    assert 8 < run.n_tokens <= 32 and grid.tokens == run.tokens
    assert grid.layer_labels[0] == "embed" and grid.layer_labels[-1] == "output"
    assert len(grid.layer_labels) == smollm2.info.n_layers + 1
    _compare(grid, trajs["logit"])
    # top-10 probabilities are sorted and the first equals the max-probability statistic
    assert np.all(np.diff(grid.top_k_probs, axis=-1) <= 1e-7)
    np.testing.assert_allclose(grid.top_k_probs[..., 0], grid.stats["max_prob"], atol=1e-6)


def test_tuned_lens_matches_tuned_lens(runtime, smollm2, tuned_dir, trajs):
    _TOKENIZER["tok"] = smollm2
    grid = lens_grid(runtime, EMBEDDED_LM, TEXT, lens="tuned", tuned_source=str(tuned_dir))
    _compare(grid, trajs["tuned"])
    logit = lens_grid(runtime, EMBEDDED_LM, TEXT, lens="logit")
    assert np.abs(grid.stats["kl_final"][:-1] - logit.stats["kl_final"][:-1]).max() > 0.01  # really a different lens


def test_difference_matches_tuned_lens_kl(runtime, tuned_dir, trajs):
    kl = lens_difference(runtime, EMBEDDED_LM, TEXT, kind="kl", tuned_source=str(tuned_dir))
    tuned, logit = trajs["tuned"], trajs["logit"]
    np.testing.assert_allclose(kl[:-1], tuned.kl_divergence(logit).stats[:-1], atol=TOL)
    js = lens_difference(runtime, EMBEDDED_LM, TEXT, kind="js", tuned_source=str(tuned_dir))
    p, q = np.exp(tuned.log_probs[:-1].astype(np.float64)), np.exp(logit.log_probs[:-1].astype(np.float64))
    m = 0.5 * (p + q)
    ref = 0.5 * (p * (np.log(p) - np.log(m))).sum(-1) + 0.5 * (q * (np.log(q) - np.log(m))).sum(-1)
    np.testing.assert_allclose(js[:-1], ref, atol=TOL)
    assert (js[:-1] <= np.log(2) + 1e-6).all() and (js[:-1] >= -1e-6).all()


def test_kl_closer_to_float64(runtime, smollm2, trajs):
    """Against a float64 reference our KL is closer than tuned-lens's float32 numpy sums."""
    grid = lens_grid(runtime, EMBEDDED_LM, TEXT)
    _, run = lens_run(runtime, EMBEDDED_LM, TEXT)
    lens = logit_lens(runtime, smollm2)
    traj = trajs["logit"]
    with torch.inference_mode():
        for layer in (0, 12):
            z = lens.unembed.final_norm(run.acts[f"blocks.{layer}.hook_resid_pre"]).double()
            lp = (z @ lens.unembed.unembedding.weight.double().T).log_softmax(-1)
            lf = run.logits.double().log_softmax(-1)
            ref = (lf.exp() * (lf - lp)).sum(-1).numpy()
            ours = np.abs(grid.stats["kl_final"][layer] - ref).max()
            theirs = np.abs(traj.forward_kl().stats[layer] - ref).max()
            assert ours <= theirs and ours / max(ref.max(), 1) < 1e-5


def test_last_layer_logit_lens_is_the_model_output(runtime, smollm2):
    n = smollm2.info.n_layers
    run = runtime.run(EMBEDDED_LM, TEXT, [f"blocks.{n - 1}.hook_resid_post"])
    lens = logit_lens(runtime, smollm2)
    with torch.inference_mode():
        ours = lens(run.acts[f"blocks.{n - 1}.hook_resid_post"], n - 1).log_softmax(-1)
    np.testing.assert_allclose(ours.numpy(), run.logits.log_softmax(-1).numpy(), atol=TOL)
    grid = lens_grid(runtime, EMBEDDED_LM, TEXT, lens="logit")
    assert np.allclose(grid.stats["kl_final"][-1], 0.0)


def test_views_never_rerun_the_model(runtime, smollm2, tuned_dir):
    text = TEXT + " again, slowly."
    lens_grid(runtime, EMBEDDED_LM, text)
    before = smollm2.forward_count
    for stat in ("max_prob", "entropy", "rank", "logprob", "cross_entropy"):
        g = lens_grid(runtime, EMBEDDED_LM, text, statistic=stat)
        assert g.values is g.stats[stat]
    for residual in ("attn", "mlp", "resid"):
        g = lens_grid(runtime, EMBEDDED_LM, text, residual=residual, start=2, width=5)
        assert len(g.tokens) == 5 and g.start == 2
    lens_grid(runtime, EMBEDDED_LM, text, lens="tuned", tuned_source=str(tuned_dir), start=1, width=4)
    lens_difference(runtime, EMBEDDED_LM, text, tuned_source=str(tuned_dir), start=1, width=4)
    assert smollm2.forward_count == before


def test_window_stats_equal_full_grid_slice(runtime):
    full = lens_grid(runtime, EMBEDDED_LM, TEXT, width=64)
    part = lens_grid(runtime, EMBEDDED_LM, TEXT, start=3, width=6, residual="resid")
    for name in ("entropy", "kl_final", "rank", "max_prob"):
        # the window's matmuls have other shapes (BLAS blocking): float32 noise, ~1e-6 relative at 160 nats
        np.testing.assert_allclose(part.stats[name], full.stats[name][:, 3:9], atol=1e-5, rtol=2e-6, equal_nan=True)
    assert part.top_tokens == [row[3:9] for row in full.top_tokens]


def test_attention_and_mlp_rows_are_labelled(runtime, smollm2):
    g = lens_grid(runtime, EMBEDDED_LM, TEXT, residual="attn", width=4)
    assert g.layer_labels[0] == "attn 0" and g.layer_labels[-1] == "output"
    m = lens_grid(runtime, EMBEDDED_LM, TEXT, residual="mlp", width=4)
    assert m.layer_labels[3] == "mlp 3"
    assert not np.allclose(g.stats["entropy"][:-1], m.stats["entropy"][:-1])


def test_bad_input_names_the_bound(runtime):
    with pytest.raises(InputError, match="Window width must be a whole number from 1 to 256; got 0"):
        lens_grid(runtime, EMBEDDED_LM, TEXT, width=0)
    with pytest.raises(InputError, match=r"Window start must be a whole number from 0 to \d+; got 500"):
        lens_grid(runtime, EMBEDDED_LM, TEXT, start=500)
    with pytest.raises(InputError, match="Unknown statistic"):
        lens_grid(runtime, EMBEDDED_LM, TEXT, statistic="nope")
    with pytest.raises(InputError, match="encoder"):
        from analysis.settings import EMBEDDED_ENCODER

        lens_grid(runtime, EMBEDDED_ENCODER, TEXT)


def test_hub_layout_mirror_and_offline_error(runtime, smollm2, tuned_dir, tmp_path, monkeypatch):
    mirror = tmp_path / "space"
    target = mirror / "lens" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    for name in ("config.json", "params.pt"):
        (target / name).write_bytes((tuned_dir / name).read_bytes())
    monkeypatch.setenv("GLASSBOX_LENS_MIRROR", str(mirror))
    src = resolve_lens_source(runtime.settings, EMBEDDED_LM, "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert src == str(target)
    lens = load_tuned_lens(runtime, smollm2, src)
    ref = load_tuned_lens(runtime, smollm2, str(tuned_dir))
    for a, b in zip(lens.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    monkeypatch.delenv("GLASSBOX_LENS_MIRROR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(InputError, match="AlignmentResearch/tuned-lens") as offline:  # answered at once, offline
        load_tuned_lens(runtime, smollm2, resolve_lens_source(runtime.settings, EMBEDDED_LM, "EleutherAI/pythia-70m-deduped"))
    assert "offline mode is on" in str(offline.value) and time.perf_counter() - started < 2


def test_wrong_shape_lens_is_refused(runtime, smollm2, tmp_path):
    import json

    from tuned_lens.nn.lenses import TunedLens, TunedLensConfig
    from tuned_lens.nn.unembed import Unembed

    small = TunedLens(Unembed(smollm2.model), TunedLensConfig("x", d_model=576, num_hidden_layers=3))
    small.save(tmp_path / "small")
    assert json.loads((tmp_path / "small" / "config.json").read_text())["num_hidden_layers"] == 3
    with pytest.raises(InputError, match="3 layers"):
        load_tuned_lens(runtime, smollm2, str(tmp_path / "small"))
    with pytest.raises(InputError, match="config.json and params.pt"):
        resolve_lens_source(runtime.settings, EMBEDDED_LM, str(tmp_path))
    with pytest.raises(ModelLoadError, match="Could not load the tuned lens"):
        load_tuned_lens(runtime, smollm2, str(tmp_path / "no-such-lens"))
