"""Runs of tiny models for the Circuits tests (capture only, no runtime)."""

from __future__ import annotations

import torch

from analysis.capture import Run, capture
from analysis.circuits import circuit_sites
from analysis.models import LoadedModel
from tests.tiny_models import VOCAB

CAUSAL_ARCHS = ["llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3", "gpt_neox", "gpt2"]


def tiny_ids(length: int = 9, seed: int = 1) -> list[int]:
    return torch.randint(3, VOCAB, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def tiny_run(lm: LoadedModel, ids: list[int], sites: list[str] | None = None) -> Run:
    result = capture(lm, torch.tensor([ids]), sites or circuit_sites(lm.info.n_layers))
    acts = {site: value[0] for site, value in result.acts.items()}
    return Run(lm.model_id, "", ids, lm.decode(ids), result.logits[0].float(), acts, frozenset(acts))
