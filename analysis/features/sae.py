"""SAEs from sae-lens attached to our capture sites: loading, hook mapping, encode, quality metrics.

An SAE is named by a *reference* string:

- ``embedded`` — the SAE shipped with Glassbox for the embedded SmolLM2 (``analysis/artifacts/...``, trained by
  ``make sae``), or the one ``make sae`` retrained here (``<cache>/saes/smollm2-l15-res``) when present;
- a local directory in sae-lens format (``cfg.json`` + ``sae_weights.safetensors``);
- ``release/sae_id`` or ``release:sae_id`` — ``SAE.from_pretrained(release, sae_id)`` (online, e.g.
  ``gpt2-small-res-jb:blocks.8.hook_resid_pre``).

sae-lens does the loading and the encoding; this module only maps the SAE's ``hook_name`` to one of
our capture sites (TransformerLens names map to themselves; the HF module paths sae-lens uses when it
trains on an HF model, e.g. ``model.layers.15``, map to ``blocks.15.hook_resid_post``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from analysis.errors import GlassboxError, InputError, PathNotAllowed
from analysis.hub import hub_offline, offline_message
from analysis.models import LoadedModel
from analysis.paths import looks_like_path, user_path
from analysis.runtime import Runtime
from analysis.settings import EMBEDDED_LM, Settings

EMBEDDED_SAE = "embedded"
EMBEDDED_SAE_NAME = "smollm2-l15-res"
EMBEDDED_SAE_LAYER = 15
META_FILE = "glassbox.json"
TRAIN_COMMAND = "make sae"

_HF_BLOCK = re.compile(r"^(?:.*\.)?(?:layers|h|layer)\.(\d+)$")
_HF_SUB = re.compile(r"^(?:.*\.)?(?:layers|h|layer)\.(\d+)\.(mlp|self_attn|attn|attention)$")


ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SHIPPED_SAE = ARTIFACTS / "smollm2-135m-instruct" / "sae-l15-res"  # sae-lens format, fp16, with glassbox.json


def trained_sae_dir(cache_dir: str | Path) -> Path:
    """Where ``make sae`` (and the page's Train SAE job) save the embedded SmolLM2's SAE when retraining."""
    return Path(cache_dir).expanduser() / "saes" / EMBEDDED_SAE_NAME


def _is_sae_dir(path: Path) -> bool:
    return (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file()


def embedded_sae_dir(cache_dir: str | Path) -> Path:
    """The embedded SAE: one retrained here (``make sae``) when present, else the one shipped with Glassbox."""
    trained = trained_sae_dir(cache_dir)
    return trained if _is_sae_dir(trained) else SHIPPED_SAE


def embedded_sae_exists(cache_dir: str | Path) -> bool:
    return _is_sae_dir(embedded_sae_dir(cache_dir))


class SAEError(GlassboxError):
    """The SAE cannot be loaded or does not fit the selected model; the message says why."""


class SAENotFound(SAEError):
    """A local SAE folder that does not exist (HTTP 404 in the API)."""

    status = 404


def hook_to_site(hook_name: str) -> str:
    """Our capture site for an SAE ``hook_name`` (TransformerLens name or HF module path)."""
    if hook_name.startswith("blocks.") or hook_name in ("hook_embed", "ln_final.hook_normalized"):
        return hook_name
    match = _HF_BLOCK.match(hook_name)
    if match:
        return f"blocks.{int(match.group(1))}.hook_resid_post"
    match = _HF_SUB.match(hook_name)
    if match:
        kind = "hook_mlp_out" if match.group(2) == "mlp" else "hook_attn_out"
        return f"blocks.{int(match.group(1))}.{kind}"
    raise SAEError(
        f"SAE hook '{hook_name}' has no matching capture site: use a TransformerLens hook name "
        "(blocks.L.hook_resid_post, ...) or an HF block path (model.layers.L)."
    )


@dataclass
class LoadedSAE:
    """An sae-lens SAE with what the page needs: its site, model and provenance."""

    ref: str
    sae: Any  # sae_lens.SAE
    site: str
    hook_name: str
    model_name: str  # as written in the SAE's metadata
    model_id: str | None  # our model id when known (embedded SAE)
    d_in: int
    d_sae: int
    meta: dict[str, Any]
    sparsity: torch.Tensor | None  # log10 feature density from training, when saved
    center: bool = False  # trained on TransformerLens's centred residual stream (center_writing_weights)
    max_norm: float | None = None  # residual norms above this were left out of training (massive activations)
    path: str | None = None  # the folder it was loaded from (None for a hub release)

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.d_sae:,} features at {self.site})"

    @torch.inference_mode()
    def encode(self, acts: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] (sae-lens ``encode``, float32, on CPU)."""
        dtype = self.sae.W_enc.dtype
        if self.center:  # HF's residual stream -> TransformerLens's centred one (mean over d_model removed)
            acts = acts - acts.mean(-1, keepdim=True)
        return self.sae.encode(acts.to(self.sae.W_enc.device, dtype)).float().cpu()

    @torch.inference_mode()
    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        return self.sae.decode(feats.to(self.sae.W_dec.device, self.sae.W_dec.dtype))

    def W_dec(self) -> torch.Tensor:  # noqa: N802 - the field's name
        return self.sae.W_dec.detach().float().cpu()

    def W_enc(self) -> torch.Tensor:  # noqa: N802
        return self.sae.W_enc.detach().float().cpu()


def parse_ref(ref: str, settings: Settings | None = None, field: str | None = None) -> tuple[str, str | None]:
    """('embedded'|'dir'|'pretrained', detail); a folder goes through the path policy."""
    ref = (ref or "").strip()
    if not ref or ref == EMBEDDED_SAE:
        return EMBEDDED_SAE, None
    if looks_like_path(ref) or Path(ref).expanduser().is_absolute():
        if settings is None:
            path = Path(ref).expanduser()
            if not path.is_dir():
                raise SAENotFound(f"SAE folder '{ref}' not found: give an existing sae-lens SAE directory or "
                                  "'release:sae_id'.", field=field)
        else:
            try:
                path = user_path(settings, ref, "SAE folder", field=field)
            except PathNotAllowed:
                raise
            except InputError as exc:
                raise SAENotFound(str(exc), field=field) from exc
        return "dir", str(path)
    if ":" in ref or "/" in ref:
        return "pretrained", ref
    raise SAEError(
        f"SAE '{ref}' is neither a local directory nor 'release:sae_id' (e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre).",
        field=field,
    )


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def _sparsity(path: Path) -> torch.Tensor | None:
    file = path / "sparsity.safetensors"
    if not file.is_file():
        return None
    from safetensors.torch import load_file

    tensors = load_file(str(file))
    return next(iter(tensors.values())).float() if tensors else None


def load_sae(runtime: Runtime, ref: str, model_id: str | None = None, device: str | torch.device = "cpu",
             field: str | None = None) -> LoadedSAE:
    """The SAE named by ``ref`` (loaded once per model and device); clear messages for missing or bad SAEs."""
    settings = runtime.settings
    kind, detail = parse_ref(ref, settings, field)
    path = embedded_sae_dir(settings.cache_dir) if kind == EMBEDDED_SAE else Path(detail or "")
    weights = path / "sae_weights.safetensors"
    stamp = weights.stat().st_mtime if kind != "pretrained" and weights.is_file() else 0.0
    key = (model_id or "", ref or EMBEDDED_SAE, str(device), stamp)
    return runtime.memo("features-sae", 8).get_or_compute(key, lambda: _load(kind, detail, path, ref, device, field))


def _load(kind: str, detail: str | None, path: Path, ref: str, device: Any, field: str | None) -> LoadedSAE:
    from sae_lens import SAE

    meta: dict[str, Any] = {}
    sparsity = None
    if kind == EMBEDDED_SAE and not _is_sae_dir(path):
        raise SAEError(
            f"No SAE for the embedded SmolLM2 ({path} is missing). Train one with `{TRAIN_COMMAND}` "
            "or the Train SAE button, or load an SAE from sae-lens by release:sae_id.", field=field
        )
    if kind in (EMBEDDED_SAE, "dir"):
        missing = [name for name in ("cfg.json", "sae_weights.safetensors") if not (path / name).is_file()]
        if missing:
            raise SAEError(f"{path} is not an sae-lens SAE folder (no {' or '.join(missing)}).", field=field)
        try:
            sae = SAE.load_from_disk(str(path), device=str(device), dtype="float32")  # shipped fp16, computed in fp32
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes a message
            raise SAEError(f"sae-lens could not load {path}: {exc}", field=field) from exc
        meta = _read_meta(path)
        sparsity = _sparsity(path)
    else:
        sep = ":" if ":" in (detail or "") else "/"
        release, _, sae_id = (detail or "").partition(sep)  # release names have no '/', sae ids may
        if hub_offline():
            raise SAEError(offline_message(f"the sae-lens release '{release}' (SAE '{sae_id}')",
                                           "Use the embedded SAE, or a local folder in sae-lens format."), field=field)
        try:
            sae = SAE.from_pretrained(release, sae_id, device=str(device))
        except Exception as exc:  # noqa: BLE001
            raise SAEError(
                f"sae-lens could not load release '{release}', sae_id '{sae_id}' ({type(exc).__name__}: {exc}).",
                field=field,
            ) from exc
    sae.eval()
    cfg_meta = getattr(sae.cfg, "metadata", None)
    hook_name = getattr(cfg_meta, "hook_name", None) or getattr(sae.cfg, "hook_name", None) or ""
    model_name = getattr(cfg_meta, "model_name", None) or getattr(sae.cfg, "model_name", None) or ""
    # TransformerLens's from_pretrained centres the residual stream (center_writing_weights, on by default);
    # an SAE trained on it must see HF's residual stream with its per-token mean removed.
    model_class = getattr(cfg_meta, "model_class_name", None)
    tl_kwargs = getattr(cfg_meta, "model_from_pretrained_kwargs", None) or {}
    centred = tl_kwargs.get("center_writing_weights", model_class == "HookedTransformer")
    center = bool(centred) and "hook_resid" in hook_name
    loaded = LoadedSAE(
        ref=ref or EMBEDDED_SAE,
        path=str(path) if kind != "pretrained" else None,
        sae=sae,
        site=hook_to_site(hook_name),
        hook_name=hook_name,
        model_name=str(model_name),
        model_id=meta.get("model_id") or (EMBEDDED_LM if kind == EMBEDDED_SAE else None),
        d_in=int(sae.cfg.d_in),
        d_sae=int(sae.cfg.d_sae),
        meta=meta,
        sparsity=sparsity,
        center=center,
        max_norm=meta.get("max_norm"),
    )
    return loaded


def _short(name: str) -> str:
    return name.rstrip("/").split("/")[-1].lower().replace("_", "-")


def check_fit(sae: LoadedSAE, lm: LoadedModel) -> None:
    """Raise a clear SAEError when the SAE does not fit the model (d_in, layer, or named model)."""
    d_model = lm.info.d_model
    if sae.d_in != d_model and not sae.site.endswith(("mlp.hook_post", "mlp.hook_pre")):
        raise SAEError(
            f"SAE {sae.ref} reads {sae.d_in}-dimensional activations at {sae.site}, but {lm.model_id} has "
            f"d_model = {d_model}. Pick the model the SAE was trained on ({sae.model_name or 'unknown'})."
        )
    if sae.site.endswith(("mlp.hook_post", "mlp.hook_pre")) and sae.d_in != lm.info.d_mlp:
        raise SAEError(f"SAE {sae.ref} reads {sae.d_in} MLP neurons but {lm.model_id} has d_mlp = {lm.info.d_mlp}.")
    match = re.match(r"blocks\.(\d+)\.", sae.site)
    if match and int(match.group(1)) >= lm.info.n_layers:
        raise SAEError(f"SAE {sae.ref} hooks layer {match.group(1)}; {lm.model_id} has {lm.info.n_layers} layers.")
    if sae.model_id is not None and sae.model_id != lm.model_id:
        raise SAEError(f"SAE {sae.ref} was trained on {sae.model_id}; select that model (selected: {lm.model_id}).")
    if sae.model_id is None and sae.model_name:
        ours = _short(lm.model_id)
        theirs = _short(sae.model_name)
        if ours and theirs and ours != theirs and theirs not in ours and ours not in theirs:
            raise SAEError(
                f"SAE {sae.ref} was trained on '{sae.model_name}', not on {lm.model_id}. "
                "Select that model (add it to MODELS in config.py)."
            )


def in_distribution(x: torch.Tensor, skip_first: int = 0, max_norm: float | None = None) -> torch.Tensor:
    """[B, T] mask of the positions an SAE was trained on: from ``skip_first`` on, and (when the SAE
    records one) with a residual norm within its ``max_norm`` (massive-activation tokens excluded)."""
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    mask[:, :skip_first] = False
    if max_norm is not None:
        mask &= x.float().norm(dim=-1) <= max_norm
    return mask


def splice_edit(sae: LoadedSAE, skip_first: int = 0, max_norm: float | None = None) -> Any:
    """A capture ``edits`` function that replaces the site's activation by the SAE reconstruction at the
    in-distribution positions (:func:`in_distribution`); the others keep their clean value."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        mask = in_distribution(x, skip_first, max_norm)
        mean = x.mean(-1, keepdim=True) if sae.center else 0.0
        recon = (sae.sae.decode(sae.sae.encode((x - mean).to(sae.sae.W_enc.dtype))) + mean).to(x.dtype)
        return torch.where(mask[..., None], recon, x)

    return edit


def zero_edit(skip_first: int = 0, max_norm: float | None = None) -> Any:
    """A capture ``edits`` function that zero-ablates the site at the in-distribution positions."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(in_distribution(x, skip_first, max_norm)[..., None], 0.0)

    return edit


@dataclass
class SAEQuality:
    """Standard SAE metrics on held-out tokens."""

    n_tokens: int
    l0: float  # mean number of active features per token
    explained_variance: float  # 1 - SSE / total variance of the activation
    ce_clean: float
    ce_spliced: float  # SAE reconstruction in place of the activation
    ce_zero: float  # activation zero-ablated
    loss_recovered: float  # (ce_zero - ce_spliced) / (ce_zero - ce_clean)
    dead_fraction: float  # features that never fired on these tokens

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _ce(logits: torch.Tensor, ids: torch.Tensor, skip_first: int = 0) -> torch.Tensor:
    """Next-token cross-entropy of the predictions made at positions ``skip_first`` .. T-2."""
    logp = torch.log_softmax(logits[:, skip_first:-1].float(), dim=-1)
    return -logp.gather(-1, ids[:, skip_first + 1 :, None]).squeeze(-1)


@torch.inference_mode()
def evaluate_sae(lm: LoadedModel, sae: LoadedSAE, batches: list[torch.Tensor], skip_first: int = 1,
                 max_norm: float | None = None, ce_batches: int | None = None) -> SAEQuality:
    """L0, explained variance and loss recovered (SAE output spliced in through capture ``edits``).

    Only the in-distribution positions (:func:`in_distribution`: not the first ``skip_first`` -- BOS or
    the attention sink -- and not massive-activation tokens above ``max_norm``, both left out of training)
    are encoded, spliced or zeroed; the others keep their clean values. CE is scored on every prediction
    from position ``skip_first`` on, over the first ``ce_batches`` batches (all when None; each costs three
    full forwards, while L0, explained variance and dead features need only the pass up to the SAE's layer).
    """
    from analysis.capture import capture

    n = 0
    l0_sum = 0.0
    sse = 0.0
    ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_ce = 0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    acts_all = []
    for index, ids in enumerate(batches):
        with_ce = ce_batches is None or index < ce_batches
        clean = capture(lm, ids, [sae.site], logits=with_ce, stop_early=not with_ce)
        site_acts = clean.acts[sae.site].float()
        x = site_acts[in_distribution(site_acts, skip_first, max_norm)]  # [N, d]
        if sae.center:
            x = x - x.mean(-1, keepdim=True)
        feats = sae.encode(x)
        recon = sae.decode(feats).float().cpu()
        x = x.cpu()
        l0_sum += float((feats > 0).sum())
        fired |= (feats > 0).any(0)
        sse += float(((recon - x) ** 2).sum())
        acts_all.append(x)
        n += x.shape[0]
        if not with_ce:
            continue
        device_ids = ids.to(clean.logits.device)
        ce["clean"] += float(_ce(clean.logits, device_ids, skip_first).sum())
        spliced = capture(lm, ids, [], edits={sae.site: splice_edit(sae, skip_first, max_norm)})
        ce["spliced"] += float(_ce(spliced.logits, device_ids, skip_first).sum())
        zero = capture(lm, ids, [], edits={sae.site: zero_edit(skip_first, max_norm)})
        ce["zero"] += float(_ce(zero.logits, device_ids, skip_first).sum())
        n_ce += ids.shape[0] * (ids.shape[1] - 1 - skip_first)
    allx = torch.cat(acts_all)
    tot = float(((allx - allx.mean(0)) ** 2).sum())
    c = {k: v / n_ce for k, v in ce.items()}
    denom = c["zero"] - c["clean"]
    return SAEQuality(
        n_tokens=n,
        l0=l0_sum / n,
        explained_variance=1.0 - sse / tot,
        ce_clean=c["clean"],
        ce_spliced=c["spliced"],
        ce_zero=c["zero"],
        loss_recovered=(c["zero"] - c["spliced"]) / denom if denom else float("nan"),
        dead_fraction=float((~fired).float().mean()),
    )


def check_site_editable(site: str) -> None:
    from analysis.capture import EDITABLE

    local = site.split(".", 2)[-1] if site.startswith("blocks.") else site
    if local not in EDITABLE:
        raise InputError(f"The SAE's site {site} cannot be edited, so steering/splicing is unavailable there.")
