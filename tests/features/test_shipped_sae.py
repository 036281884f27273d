"""The SAE shipped for the embedded SmolLM2 is what the Features page opens as ``embedded`` on a fresh
install, and it measures what its glassbox.json says on held-out text (re-measured here on a slice)."""

from __future__ import annotations

import json

import pytest

from analysis.corpus.training import training_corpus
from analysis.features import SHIPPED_SAE, evaluate_sae, load_sae
from analysis.features.train import heldout_batches
from analysis.io import RUN_LIKE, pack_rows
from analysis.settings import EMBEDDED_LM

pytestmark = pytest.mark.skipif(not (SHIPPED_SAE / "cfg.json").is_file(), reason="no shipped SAE in this checkout")


def test_shipped_sae_is_the_embedded_one_and_meets_its_figures(runtime, smollm2):
    meta = json.loads((SHIPPED_SAE / "glassbox.json").read_text())
    sae = load_sae(runtime, "embedded", EMBEDDED_LM)
    assert sae.d_sae == 3072 and sae.d_in == 576 and sae.site == "blocks.15.hook_resid_post"
    assert (SHIPPED_SAE / "sae_weights.safetensors").stat().st_size <= 8 * 1024**2
    # the training run's own held-out rows (same corpus split), 16 of its 400 spread over every source
    options = meta["options"]
    corpus = training_corpus(max_chars=int(options["tokens"] * 5.5),
                             heldout_chars=options["heldout_rows"] * options["seq_len"] * 6)
    seq_len = options["seq_len"]
    rows = [r for r in pack_rows(smollm2.tokenizer, corpus.heldout, options["heldout_rows"] * seq_len, seq_len, RUN_LIKE)
            if len(r) == seq_len]
    assert len(rows) == meta["corpus"]["heldout_rows"]
    quality = evaluate_sae(smollm2, sae, heldout_batches(rows[:: len(rows) // 16][:16]), skip_first=1,
                           max_norm=meta["max_norm"], ce_batches=1)
    shipped = meta["heldout"]
    assert quality.explained_variance == pytest.approx(shipped["explained_variance"], abs=0.06)
    assert quality.l0 == pytest.approx(shipped["l0"], abs=10)
    assert quality.loss_recovered > 0.85
