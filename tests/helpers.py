"""Shared by several test modules: a small neuron index of the embedded SmolLM2 (built once via the CLI)
and random sae-lens SAEs saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from analysis.neurons import IndexConfig
from analysis.settings import EMBEDDED_LM

LAYERS = "0-3"
ARGS = ["build", "--model", EMBEDDED_LM, "--corpus", "prose", "--tokens", "320", "--seq-len", "40",
        "--top-k", "5", "--batch-size", "4", "--layers", LAYERS]


def index_config() -> IndexConfig:
    """The config the CLI arguments above produce."""
    return IndexConfig(model_id=EMBEDDED_LM, corpus="prose", n_tokens=320, seq_len=40, top_k=5, batch_size=4,
                       layers=[0, 1, 2, 3])


def ensure_index(runtime) -> Path:
    """Build (or reuse, when complete) the test index with ``python -m analysis.neurons build``."""
    from analysis.neurons import index_path
    from analysis.neurons.index import build_command

    path = index_path(runtime, index_config())
    assert build_command(ARGS) == 0
    assert path.is_file()
    return path


def make_sae(path: Path, d_in: int = 576, d_sae: int = 96, hook: str = "blocks.15.hook_resid_post",
             model_name: str = "smollm2-135m-instruct", seed: int = 0, model_id: str | None = EMBEDDED_LM,
             model_class: str | None = None) -> str:
    """A randomly initialised sae-lens StandardSAE saved in sae-lens format (with a negative bias so
    it is sparse-ish)."""
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    cfg.metadata.model_name = model_name
    if model_class:
        cfg.metadata.model_class_name = model_class
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.fill_(-2.0)
    sae.save_model(str(path))
    if model_id:
        (path / "glassbox.json").write_text(json.dumps({"model_id": model_id}))
    return str(path)



