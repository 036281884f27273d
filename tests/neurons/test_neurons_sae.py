"""SAE features in a neuron index: stored max == recomputed (sae-lens encode of the captured site)."""

from __future__ import annotations

import pytest
import torch

from analysis.capture import capture
from analysis.neurons import IndexConfig, NeuronIndex, build_index
from analysis.settings import EMBEDDED_LM


def test_sae_features_are_indexed(runtime, smollm2, tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig

    from analysis.features import load_sae

    torch.manual_seed(0)
    cfg = StandardSAEConfig(d_in=576, d_sae=48)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    cfg.metadata.model_name = "smollm2-135m-instruct"
    StandardSAE(cfg).save_model(str(tmp_path / "sae"))
    ref = str(tmp_path / "sae")
    icfg = IndexConfig(model_id=EMBEDDED_LM, corpus="prose", n_tokens=160, seq_len=40, top_k=3, batch_size=4,
                       layers=[0], sae=ref, sample_tokens=32)
    index = NeuronIndex(build_index(runtime, icfg, path=tmp_path / "sae.sqlite"), smollm2.decode)
    group = index.group("sae")
    assert group.width == 48 and group.site == "blocks.1.hook_resid_post" and index.has_sae
    sae = load_sae(runtime, ref, EMBEDDED_LM)
    feats = []
    for row in range(index.meta["rows"]):
        ids = index.row_ids(row)
        x = capture(smollm2, torch.tensor([ids]), [group.site], logits=False, stop_early=True).acts[group.site][0]
        feats.append(sae.encode(x))
    corpus_max = torch.stack([f.max(0).values for f in feats]).max(0).values
    for unit in range(0, 48, 7):
        rec = index.unit("sae", unit)
        assert rec.kind == "sae" and rec.max_act == pytest.approx(float(corpus_max[unit]), rel=1e-3, abs=1e-3)
        top = rec.snippets[0]
        assert float(feats[top.row_id][top.pos, unit]) == pytest.approx(top.act, rel=1e-3, abs=1e-3)
    assert index.similarity(("sae", 1), ("sae", 2))["cosine"] == pytest.approx(
        index.similarity(("sae", 2), ("sae", 1))["cosine"])
