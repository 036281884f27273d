"""Lens objects from tuned-lens: the logit lens, pretrained tuned lenses (local dir or hub), trained ones.

Everything here is tuned-lens's own code (``Unembed``, ``LogitLens``, ``TunedLens``,
``load_lens_artifacts``); this module only resolves where a lens lives (the shipped lens of the embedded
model, one trained here, a folder under the path policy, a hub id when the hub is reachable), checks that
it fits the model, and caches loaded lenses in the runtime's memos (dropped with their model).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from analysis.errors import InputError, ModelLoadError
from analysis.hub import hub_offline, offline_message
from analysis.models import LoadedModel
from analysis.paths import looks_like_path, user_path
from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM, Settings
from analysis.sites import arch_for, get_module

HUB_REPO = "AlignmentResearch/tuned-lens"  # a Hugging Face *space*: lens/<model id>/{config.json,params.pt}
MIRROR_ENV = "GLASSBOX_LENS_MIRROR"  # a local folder laid out like the space (lens/<model id>/...)

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SHIPPED_LENSES = {EMBEDDED_LM: ARTIFACTS / "smollm2-135m-instruct" / "tuned-lens"}  # tuned-lens format, fp16


def slug(model_id: str) -> str:
    """A folder-safe name for a model id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"


def trained_lens_dir(settings: Settings, model_id: str) -> Path:
    """Where ``make lens`` / the page button save the tuned lens for ``model_id``."""
    return settings.cache_path / "lenses" / slug(model_id)


def get_unembed(runtime: Runtime, lm: LoadedModel):
    """tuned-lens's ``Unembed`` for this model, sharing the model's own final norm and unembedding.

    ``Unembed.__init__`` deep-copies both (113 MB for SmolLM2, 250-500 MB for Llama-2-7B); the model's
    weights are frozen (``wrap_model``) and never cast by a lens, so sharing them is safe.
    """

    def build() -> Any:
        try:
            unembed = _shared_unembed(lm.model).to(lm.device)
        except Exception as exc:  # model_surgery raises ValueError for unknown layouts
            raise ModelLoadError(f"tuned-lens cannot find the unembedding of {lm.info.model_id}: {exc}") from exc
        return unembed.eval()

    return runtime.memo("lens-unembed", 8).get_or_compute((lm.model_id,), build)


def _shared_unembed(model: Any) -> Any:
    """An ``Unembed`` built as its ``__init__`` does, minus the two deep copies, with the final norm found by
    Glassbox's site map (tuned-lens's ``model_surgery`` knows only the OPT, GPT-2/Neo/J, NeoX, Bloom and
    Llama families; Gemma 1-3, Qwen2 and Mistral need the same two modules found by name)."""
    from tuned_lens.nn.unembed import Unembed

    spec = arch_for(model)
    if spec.final_norm is None or model.get_output_embeddings() is None:
        raise ValueError("no final norm and unembedding (an encoder)")
    unembed = Unembed.__new__(Unembed)
    torch.nn.Module.__init__(unembed)
    unembed.final_norm = get_module(model, spec.final_norm)
    unembed.unembedding = model.get_output_embeddings()
    return unembed


def logit_lens(runtime: Runtime, lm: LoadedModel):
    from tuned_lens.nn.lenses import LogitLens

    return runtime.memo("lens-logit", 8).get_or_compute((lm.model_id,), lambda: LogitLens(get_unembed(runtime, lm)))


def fresh_tuned_lens(runtime: Runtime, lm: LoadedModel):
    """A new (identity-initialised) ``TunedLens`` for ``lm``, named by its Glassbox model id."""
    from tuned_lens.nn.lenses import TunedLens, TunedLensConfig

    config = TunedLensConfig(
        base_model_name_or_path=lm.info.model_id,
        d_model=lm.info.d_model,
        num_hidden_layers=lm.info.n_layers,
    )
    return TunedLens(get_unembed(runtime, lm), config).to(lm.device)


def _mirror_dir(lens_id: str, mirror: str | Path | None) -> Path | None:
    root = mirror or os.environ.get(MIRROR_ENV)
    if not root:
        return None
    path = Path(root).expanduser() / "lens" / lens_id
    return path if (path / "config.json").exists() and (path / "params.pt").exists() else None


def _is_lens_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "params.pt").is_file()


def default_lens_dir(settings: Settings, model_id: str) -> Path | None:
    """The lens used when none is named: one trained here (``make lens``, the Train button), else the one
    shipped with Glassbox for this model, else None."""
    trained = trained_lens_dir(settings, model_id)
    if _is_lens_dir(trained):
        return trained
    shipped = SHIPPED_LENSES.get(model_id)
    return shipped if shipped is not None and _is_lens_dir(shipped) else None


def resolve_lens_source(settings: Settings, model_id: str, source: str | None, mirror: str | Path | None = None,
                        field: str | None = None) -> str:
    """A local directory or a hub id for the tuned lens of ``model_id``.

    ``source`` None/"" = the default lens (:func:`default_lens_dir`); a folder (path policy) with
    config.json + params.pt; or a model id of the tuned-lens space (e.g. ``meta-llama/Llama-2-7b-hf``),
    looked up first in a local mirror (``mirror`` or $GLASSBOX_LENS_MIRROR, laid out like the space) and
    then online -- at once refused with a clear message when the hub is unreachable.
    """
    if not source or not source.strip():
        path = default_lens_dir(settings, model_id)
        if path is None:
            raise InputError(
                f"No tuned lens for {model_id} yet: train one (the Train button, or `make lens`) "
                "or enter a pretrained lens (a folder with config.json + params.pt, or a model id of "
                f"the {HUB_REPO} space).", field=field,
            )
        return str(path)
    source = source.strip()
    if looks_like_path(source) or Path(source).expanduser().is_absolute():
        local = user_path(settings, source, "tuned lens folder", field=field)
        if not _is_lens_dir(local):
            raise InputError(f"Lens folder {local} needs config.json and params.pt (tuned-lens format).", field=field)
        return str(local)
    mirrored = _mirror_dir(source, mirror)
    if mirrored is not None:
        return str(mirrored)
    if hub_offline():
        raise InputError(offline_message(f"the pretrained tuned lens '{source}' from {HUB_REPO}",
                                         "Give a local lens folder (config.json + params.pt), set "
                                         f"{MIRROR_ENV} to a mirror of the space, or train one here."), field=field)
    return source


def load_tuned_lens(runtime: Runtime, lm: LoadedModel, source: str):
    """Load a tuned lens (dir or hub id, see ``resolve_lens_source``) and check it fits ``lm``."""
    from tuned_lens.nn.lenses import TunedLens

    path = Path(source)
    stamp = (path / "params.pt").stat().st_mtime if (path / "params.pt").exists() else 0.0

    def load() -> Any:
        try:
            lens = TunedLens.from_unembed_and_pretrained(
                get_unembed(runtime, lm), source, map_location=lm.device, weights_only=True
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
        # the translators only: the unembed is the model's own final norm and head, never cast by a lens
        lens.layer_translators.to(device=lm.device, dtype=lm.dtype)  # shipped fp16 -> the model's dtype
        return lens.eval()

    return runtime.memo("lens-tuned", 8).get_or_compute((lm.model_id, source, stamp), load)


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
