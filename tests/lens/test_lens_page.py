"""Lens page callbacks (called as functions), export, and training on the real embedded SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis.errors import InputError
from analysis.jobs import Job
from analysis.lens import TrainConfig, load_tuned_lens, train_tuned_lens
from analysis.settings import EMBEDDED_LM
from callbacks import lens as handlers

TEXT = "Water boils at one hundred degrees Celsius at sea level, and freezes at zero."


def test_logit_view_figures(runtime):
    out = handlers.build_view(EMBEDDED_LM, "user", TEXT, "max_prob", "logit", "resid", "js", 0, 8, None)
    heat = out["figure"].data[0]
    assert heat.type == "heatmap" and np.asarray(heat.z).shape == (31, 8)
    assert len(heat.text) == 31 and len(heat.text[0]) == 8
    assert "0.000" not in heat.hovertext[0][0] or "·" in heat.hovertext[0][0]
    assert heat.hovertext[-1][0].count("<br>") >= 11  # header + statistic + top-10 lines
    assert float(np.nanmax(heat.z)) <= 1.0 and heat.zmin == 0.0
    assert out["summary"].data[0].name == "logit lens" and len(out["summary"].data[0].y) == 31
    assert out["n_cols"] == 8 and "positions 0–7" in out["note"]


def test_update_reports_bad_width_and_keeps_state(runtime):
    with pytest.raises(InputError, match="Window width must be a whole number from 1 to 256; got 999") as bad:
        handlers.update(EMBEDDED_LM, "user", TEXT, "entropy", "logit", "resid", "js", 0, 999, "", "auto", None)
    assert bad.value.field == "lens-width"  # marked beside the field; the grid keeps its last good figure
    state = handlers.url_state(EMBEDDED_LM, "user", TEXT, "entropy", "logit", "resid", "js", 0, 999, "", "auto")
    assert state["stat"] == "entropy" and state["width"] == 999
    with pytest.raises(InputError, match="lens") as missing:
        handlers.update(EMBEDDED_LM, "user", TEXT, "entropy", "tuned", "resid", "js", 0, 8, "/nonexistent/lens", "auto", None)
    assert "No such folder" in str(missing.value)


def test_export_svg_has_tokens(runtime):
    out = handlers.build_view(EMBEDDED_LM, "user", TEXT, "kl_final", "logit", "resid", "js", 0, 6, None, paper=True)
    svg = handlers.export_bytes(out, "svg").decode()
    assert svg.startswith("<svg") and "Water" in svg
    assert out["figure"].data[0].hovertext is None


def test_training_saves_tuned_lens_format_and_loads_back(runtime, smollm2, tmp_path):
    cfg = TrainConfig(steps=2, seq_len=16, batch_size=1, heldout_rows=2, out=str(tmp_path / "lens"),
                      warmup_steps=0, lr=1e-3)
    seen = []
    job = Job(on_progress=lambda p: seen.append(p), min_interval_s=0)
    result = train_tuned_lens(runtime, cfg, job)
    steps = [p for p in seen if p.phase == "training" and p.done]
    assert [p.done for p in steps] == [1, 2] and all("KL to final" in p.message for p in steps)
    assert {"packing the training corpus", "saving the lens"} <= {p.phase for p in seen}
    assert any(p.phase.startswith("evaluating") for p in seen)
    assert result.steps_done == 2 and result.tokens_seen == 32 and not result.cancelled
    assert (tmp_path / "lens" / "params.pt").exists()
    config = json.loads((tmp_path / "lens" / "config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["d_model"] == 576
    lens = load_tuned_lens(runtime, smollm2, str(tmp_path / "lens"))
    assert any(float(p.abs().sum()) > 0 for p in lens.parameters())  # it moved away from the identity
    state = torch.load(tmp_path / "lens" / "params.pt", weights_only=True)
    assert set(state) == {f"{i}.{w}" for i in range(30) for w in ("weight", "bias")}
    assert len(result.per_layer_kl_logit) == 30 and result.heldout_kl_logit > 0
    # the first translator is at identity + one small step: its KL barely differs from the logit lens
    assert abs(result.per_layer_kl_tuned[-1] - result.per_layer_kl_logit[-1]) < result.per_layer_kl_logit[-1]


def test_both_and_difference_views(runtime, smollm2, tmp_path):
    from analysis.lens import fresh_tuned_lens, save_lens

    lens = fresh_tuned_lens(runtime, smollm2)
    with torch.no_grad():
        for layer in lens.layer_translators:
            layer.bias.fill_(0.05)
    src = str(save_lens(lens, tmp_path / "tl"))
    both = handlers.build_view(EMBEDDED_LM, "user", TEXT, "entropy", "both", "resid", "js", 0, 6, src)
    assert [t.type for t in both["figure"].data] == ["heatmap", "heatmap"]
    assert both["figure"].data[0].zmin == both["figure"].data[1].zmin  # one shared colour range
    assert {t.name for t in both["summary"].data} == {"logit lens", "tuned lens"}
    lay = both["figure"].layout
    assert lay.yaxis.domain[0] > lay.yaxis2.domain[1]  # stacked: logit above tuned
    side = handlers.build_view(EMBEDDED_LM, "user", TEXT, "entropy", "side", "resid", "js", 0, 6, src)
    lay = side["figure"].layout
    assert [t.type for t in side["figure"].data] == ["heatmap", "heatmap"]
    assert lay.xaxis.domain[1] < lay.xaxis2.domain[0]  # side by side: logit left of tuned
    assert side["figure"].data[0].zmin == side["figure"].data[1].zmin
    assert np.array_equal(np.asarray(side["figure"].data[1].z, float), np.asarray(both["figure"].data[1].z, float),
                          equal_nan=True)  # same tuned grid, other arrangement
    assert lay.height < both["figure"].layout.height
    diff = handlers.build_view(EMBEDDED_LM, "user", TEXT, "entropy", "diff", "mlp", "js", 0, 6, src)
    z = np.asarray(diff["figure"].data[0].z, dtype=float)
    assert z.shape == (31, 6) and np.all(z[:-1] >= -1e-9) and np.all(z[:-1] <= np.log(2) + 1e-9)
    assert np.all(z[-1] == 0) and z[:-1].max() > 0
    assert "JS divergence" in diff["figure"].layout.title.text


def test_training_resumes_from_its_checkpoint(runtime, smollm2, tmp_path):
    """Killed (here: cancelled) at step 2 of 4, a second run with the same settings continues from the
    checkpoint and ends with the lens an uninterrupted run makes; a completed run removes the checkpoint."""
    from analysis.lens.train import CHECKPOINT_FILE

    def config(folder: str) -> TrainConfig:
        return TrainConfig(steps=4, seq_len=16, batch_size=1, heldout_rows=1, out=str(tmp_path / folder),
                           warmup_steps=0, lr=1e-2, checkpoint_every=2)

    whole = train_tuned_lens(runtime, config("whole"))
    assert not (tmp_path / "whole" / CHECKPOINT_FILE).exists()

    def stop_at_two(progress) -> None:
        if progress.phase == "training" and progress.done >= 2:
            job.cancel()

    job = Job(on_progress=stop_at_two, min_interval_s=0)
    first = train_tuned_lens(runtime, config("split"), job)
    assert first.cancelled and first.steps_done == 2
    assert torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=False)["step"] == 2
    seen = []
    second = train_tuned_lens(runtime, config("split"), Job(on_progress=seen.append, min_interval_s=0))
    assert not second.cancelled and second.steps_done == 4
    assert any("resumed at step 2" in (p.message or "") for p in seen)
    assert [p.done for p in seen if p.phase == "training" and p.done][-2:] == [3, 4]
    assert second.losses == pytest.approx(whole.losses, rel=1e-5)
    ours = torch.load(tmp_path / "split" / "params.pt", weights_only=True)
    reference = torch.load(tmp_path / "whole" / "params.pt", weights_only=True)
    for name, value in reference.items():
        torch.testing.assert_close(ours[name], value, atol=1e-6, rtol=1e-5)
    assert not (tmp_path / "split" / CHECKPOINT_FILE).exists()


def test_training_ignores_a_checkpoint_of_other_settings(runtime, smollm2, tmp_path):
    from analysis.lens.train import CHECKPOINT_FILE, _load_checkpoint, _save_checkpoint

    cfg = TrainConfig(steps=4, seq_len=16, batch_size=1, out=str(tmp_path))
    lens = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(lens.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    _save_checkpoint(tmp_path / CHECKPOINT_FILE, cfg, 2, lens, opt, sched, [1.0, 0.5], 3.0)
    assert _load_checkpoint(tmp_path / CHECKPOINT_FILE, cfg)["step"] == 2
    other = TrainConfig(steps=4, seq_len=32, batch_size=1, out=str(tmp_path))
    assert _load_checkpoint(tmp_path / CHECKPOINT_FILE, other) is None
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    assert _load_checkpoint(tmp_path / CHECKPOINT_FILE, cfg) is None


def test_edit_views_kl_per_cell_and_clean_above_edited(runtime, smollm2):
    """Head 2 of layer 3 set to 1.0: rows that read the residual before block 3 do not move (KL 0), later rows
    do; the output row is KL between the two runs' own next-token distributions, by hand."""
    from analysis.edits import HeadEdit

    store = {"edits": "head:L3.H2=1", "src": ""}
    out = handlers.build_view(EMBEDDED_LM, "user", TEXT, "kl_final", "edit", "resid", "js", 0, 8, None,
                              edits_store=store)
    values = np.asarray(out["figure"].data[0].z, dtype=float)
    assert values.shape == (31, 8)
    assert np.allclose(values[:4], 0.0, atol=1e-6)  # embed, L1..L3 read resid_pre of blocks 0..3: before the edit
    assert values[4:].max() > 1e-3
    clean = runtime.run(EMBEDDED_LM, TEXT, [])
    edited = runtime.run(EMBEDDED_LM, TEXT, [], edits=[HeadEdit(3, 2, 1.0)])
    logp, logq = clean.logits[:8].float().log_softmax(-1), edited.logits[:8].float().log_softmax(-1)
    by_hand = (logp.exp() * (logp - logq)).sum(-1).numpy()
    np.testing.assert_allclose(values[-1], by_hand, atol=1e-4, rtol=1e-3)
    assert "Edits: head:L3.H2=1" in out["note"]
    pair = handlers.build_view(EMBEDDED_LM, "user", TEXT, "kl_final", "edited", "resid", "js", 0, 8, None,
                               edits_store=store)
    assert len(pair["figure"].data) == 2 and "clean above edited" in pair["figure"].layout.title.text
    assert [t.name for t in pair["summary"].data[:2]] == ["logit lens", "edited logit lens"] or \
        "edited logit lens" in [t.name for t in pair["summary"].data]
    with pytest.raises(InputError, match="needs an edit list"):
        handlers.build_view(EMBEDDED_LM, "user", TEXT, "kl_final", "edit", "resid", "js", 0, 8, None)
