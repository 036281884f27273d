"""Shared by the Neurons tests: one small index of the embedded SmolLM2, built once via the CLI."""

from __future__ import annotations

from pathlib import Path

from analysis.neurons_build import IndexConfig
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
    from analysis.neurons import index_path, main

    path = index_path(runtime, index_config())
    assert main(ARGS) == 0
    assert path.is_file()
    return path
