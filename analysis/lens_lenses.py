"""Lens objects from tuned-lens: the logit lens, pretrained tuned lenses (local dir or hub), trained ones.

Everything here is tuned-lens's own code (``Unembed``, ``LogitLens``, ``TunedLens``,
``load_lens_artifacts``); this module only resolves where a lens lives, checks that it fits the
model, and caches loaded lenses per model.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import torch

from analysis.errors import InputError, ModelLoadError
from analysis.models import LoadedModel
from analysis.settings import Settings

HUB_REPO = "AlignmentResearch/tuned-lens"  # a Hugging Face *space*: lens/<model id>/{config.json,params.pt}
MIRROR_ENV = "GLASSBOX_LENS_MIRROR"  # a local folder laid out like the space (lens/<model id>/...)

_lock = threading.Lock()
_unembeds: dict[tuple[str, int], Any] = {}
_tuned: dict[tuple[str, str, float], Any] = {}


def slug(model_id: str) -> str:
    """A folder-safe name for a model id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"


def trained_lens_dir(settings: Settings, model_id: str) -> Path:
    """Where ``make lens`` / the page button save the tuned lens for ``model_id``."""
    return settings.cache_path / "lenses" / slug(model_id)


def get_unembed(lm: LoadedModel):
    """tuned-lens's ``Unembed`` for this model, sharing the model's own final norm and unembedding.

    ``Unembed.__init__`` deep-copies both (113 MB for SmolLM2, 250-500 MB for Llama-2-7B); the model's
    weights are frozen (``wrap_model``) and never cast by a lens, so sharing them is safe.
    """
    key = (lm.info.model_id, id(lm.model))
    with _lock:
        unembed = _unembeds.get(key)
        if unembed is None:
            try:
                unembed = _shared_unembed(lm.model).to(lm.device)
            except Exception as exc:  # model_surgery raises ValueError for unknown layouts
                raise ModelLoadError(f"tuned-lens cannot find the unembedding of {lm.info.model_id}: {exc}") from exc
            unembed.eval()
            _unembeds[key] = unembed
        return unembed


def _shared_unembed(model: Any) -> Any:
    """An ``Unembed`` built as its ``__init__`` does, minus the two deep copies."""
    from tuned_lens import model_surgery
    from tuned_lens.nn.unembed import Unembed

    unembed = Unembed.__new__(Unembed)
    torch.nn.Module.__init__(unembed)
    unembed.final_norm = model_surgery.get_final_norm(model)
    unembed.unembedding = model_surgery.get_unembedding_matrix(model)
    return unembed


def logit_lens(lm: LoadedModel):
    from tuned_lens.nn.lenses import LogitLens

    return LogitLens(get_unembed(lm))


def fresh_tuned_lens(lm: LoadedModel):
    """A new (identity-initialised) ``TunedLens`` for ``lm``, named by its Glassbox model id."""
    from tuned_lens.nn.lenses import TunedLens, TunedLensConfig

    config = TunedLensConfig(
        base_model_name_or_path=lm.info.model_id,
        d_model=lm.info.d_model,
        num_hidden_layers=lm.info.n_layers,
    )
    return TunedLens(get_unembed(lm), config).to(lm.device)


def _mirror_dir(lens_id: str, mirror: str | Path | None) -> Path | None:
    root = mirror or os.environ.get(MIRROR_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / "lens" / lens_id
    return path if (path / "config.json").exists() and (path / "params.pt").exists() else None


def resolve_lens_source(settings: Settings, model_id: str, source: str | None, mirror: str | Path | None = None) -> str:
    """A local directory or a hub id for the tuned lens of ``model_id``.

    ``source`` None/"" = the lens trained here (``make lens``); a directory with config.json + params.pt;
    or a model id of the tuned-lens space (e.g. ``meta-llama/Llama-2-7b-hf``), looked up first in a
    local mirror (``mirror`` or $GLASSBOX_LENS_MIRROR, laid out like the space) and then online.
    """
    if not source or not source.strip():
        path = trained_lens_dir(settings, model_id)
        if not (path / "params.pt").exists():
            raise InputError(
                f"No tuned lens for {model_id} yet: train one (the Train button, or `make lens`) "
                "or enter a pretrained lens (a folder with config.json + params.pt, or a model id of "
                f"the {HUB_REPO} space)."
            )
        return str(path)
    source = source.strip()
    local = Path(source).expanduser()
    if local.is_dir():
        if not ((local / "config.json").exists() and (local / "params.pt").exists()):
            raise InputError(f"Lens folder {local} needs config.json and params.pt (tuned-lens format).")
        return str(local)
    mirrored = _mirror_dir(source, mirror)
    return str(mirrored) if mirrored is not None else source


def load_tuned_lens(lm: LoadedModel, source: str):
    """Load a tuned lens (dir or hub id, see ``resolve_lens_source``) and check it fits ``lm``."""
    from tuned_lens.nn.lenses import TunedLens

    path = Path(source)
    stamp = (path / "params.pt").stat().st_mtime if (path / "params.pt").exists() else 0.0
    key = (lm.info.model_id, source, stamp)
    with _lock:
        cached = _tuned.get(key)
    if cached is not None:
        return cached
    try:
        lens = TunedLens.from_unembed_and_pretrained(
            get_unembed(lm), source, map_location=lm.device, weights_only=True
        )
    except InputError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tuned lens '{source}' for {lm.info.model_id} "
            f"(local folder, or {HUB_REPO} online): {type(exc).__name__}: {exc}"
        ) from exc
    cfg = lens.config
    if cfg.num_hidden_layers != lm.info.n_layers or cfg.d_model != lm.info.d_model:
        raise InputError(
            f"The tuned lens '{source}' is for a model with {cfg.num_hidden_layers} layers and d_model "
            f"{cfg.d_model}; {lm.info.model_id} has {lm.info.n_layers} layers and d_model {lm.info.d_model}."
        )
    lens = lens.to(lm.device).eval()
    with _lock:
        _tuned[key] = lens
    return lens


def save_lens(lens: Any, path: Path) -> Path:
    """Save in tuned-lens's format (config.json + params.pt), atomically replacing an older lens."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    lens.save(tmp)
    path.mkdir(parents=True, exist_ok=True)
    for name in ("params.pt", "config.json"):
        os.replace(tmp / name, path / name)
    tmp.rmdir()
    return path


def lens_dtype(lens: Any) -> torch.dtype:
    return next(iter(lens.parameters()), torch.zeros(())).dtype
