"""Edits every page can apply to a run: ablate a neuron or an attention head, add a steering vector.

An edit list becomes ``capture``'s ``edits`` (site -> function), several edits of one site composed in
list order, so an edited run is one forward with hooks, never a second code path:

- ``neuron``: ``blocks.{l}.mlp.hook_post[..., n]`` (the down projection's input) set to ``value``
  (0 = zero ablation; a mean over a corpus is given as the value);
- ``head``: ``blocks.{l}.attn.hook_z[..., h, :]`` (the head's input to the output projection) set to
  ``value`` (0 = zero ablation);
- ``steer``: ``vector * scale`` added to a residual site (``hook_resid_pre`` / ``hook_resid_post``) at
  chosen positions (all when none), e.g. an SAE feature's decoder direction or ActAdd's difference of
  two prompts' residuals;
- ``feature``: an SAE feature set to a value at the SAE's hook, the SAE's error term kept:
  ``x + (value - f_i(x)) * W_dec[i]`` (0 = ablation, anything else = clamp);
- ``patch``: a residual site at chosen positions replaced by another text's values there (activation
  patching from a source run).

Neuron and head edits take ``=mean``: the unit's mean over the offline training corpus
(:func:`corpus_means`, every position but each row's first), the usual mean ablation.

Text form (URL, API): edits joined by ``;`` — ``neuron:L5.N123``, ``neuron:L5.N123=0.25``,
``neuron:L5.N123=mean``, ``head:L3.H2``, ``head:L3.H2=mean``, ``steer:L6.resid_pre@2-4*8`` (the vector is
passed beside the text) or ``steer:L15.resid_post*8=feature[embedded]:F12`` (along that feature's decoder row), ``feature[embedded]:F123=4`` (the SAE reference in brackets),
``patch:L6.resid_pre@3-4`` (the source text passed beside). At most ``MAX_EDITS`` edits; every bound is
named in the error. :func:`edits_key` is what edited runs are cached under (text form + tensor digests).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.params import parse_ranges

MAX_EDITS = 16
EDITS_FIELD = "shell-edits"  # the edit list's box in the shell: bad edits are marked there
STEER_SITES = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post"}
Edit = Callable[[torch.Tensor], torch.Tensor]


def _value_text(value: float | torch.Tensor, mean: bool) -> str:
    if mean:
        return "=mean"
    return f"={float(value):g}" if isinstance(value, (int, float)) and value else ""


@dataclass(frozen=True)
class NeuronEdit:
    layer: int
    neuron: int
    value: float | None = 0.0  # None until resolve_edits fills in the corpus mean
    mean: bool = False

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.mlp.hook_post"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., self.neuron] = self.value
        return x

    @property
    def text(self) -> str:
        return f"neuron:L{self.layer}.N{self.neuron}" + _value_text(self.value, self.mean)


@dataclass(frozen=True)
class HeadEdit:
    layer: int
    head: int
    value: float | torch.Tensor | None = 0.0  # a number, or a [d_head] vector (the corpus mean)
    mean: bool = False

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        value = self.value.to(z.device, z.dtype) if isinstance(self.value, torch.Tensor) else self.value
        z[..., self.head, :] = value
        return z

    @property
    def text(self) -> str:
        return f"head:L{self.layer}.H{self.head}" + _value_text(self.value, self.mean)


@dataclass(frozen=True)
class SteerEdit:
    layer: int
    vector: torch.Tensor | None  # [d_model]; None until resolve_edits reads ``feature``'s decoder direction
    scale: float = 1.0
    positions: tuple[int, ...] = ()  # () = every position
    where: str = "resid_pre"
    feature: tuple[str, int] | None = None  # (SAE reference, feature): steer along that feature's W_dec row

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.{STEER_SITES[self.where]}"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        delta = (self.vector * self.scale).to(x.device, x.dtype)
        x = x.clone()
        if self.positions:
            index = torch.tensor([p for p in self.positions if p < x.shape[1]], dtype=torch.long)
            x[:, index] += delta
        else:
            x += delta
        return x

    @property
    def text(self) -> str:
        at = "@" + ",".join(map(str, self.positions)) if self.positions else ""
        along = f"=feature[{self.feature[0]}]:F{self.feature[1]}" if self.feature else ""
        return f"steer:L{self.layer}.{self.where}{at}*{self.scale:g}{along}"


class FeatureSource(Protocol):
    """What a feature edit needs of an SAE (``analysis.features.LoadedSAE`` is one)."""

    site: str
    d_sae: int

    def encode(self, acts: torch.Tensor) -> torch.Tensor: ...

    def W_dec(self) -> torch.Tensor: ...  # noqa: N802 - the field's name


@dataclass(frozen=True)
class FeatureEdit:
    """SAE feature ``feature`` set to ``value`` at the SAE's site, its error term kept (0 = ablation)."""

    ref: str  # the SAE's reference as the Features page names it (``embedded``, a folder, a release id)
    feature: int
    value: float = 0.0
    sae: Any = None  # a FeatureSource, attached by resolve_edits

    @property
    def site(self) -> str:
        return self.sae.site

    @property
    def layer(self) -> int:
        return int(self.site.split(".")[1])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        direction = self.sae.W_dec()[self.feature].to(x.device, x.dtype)
        current = self.sae.encode(x)[..., self.feature].to(x.device, x.dtype)
        return x + (self.value - current)[..., None] * direction

    @property
    def text(self) -> str:
        return f"feature[{self.ref}]:F{self.feature}" + (f"={self.value:g}" if self.value else "")


@dataclass(frozen=True)
class PatchEdit:
    """A residual site at ``positions`` replaced by a source text's values there (``values`` [P, d_model])."""

    layer: int
    where: str
    positions: tuple[int, ...]
    values: torch.Tensor | None = None  # filled in from the source run by resolve_edits
    source: str = ""  # the source text

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.{STEER_SITES[self.where]}"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        index = torch.tensor(self.positions, dtype=torch.long)
        x[:, index] = self.values.to(x.device, x.dtype)
        return x

    @property
    def text(self) -> str:
        return f"patch:L{self.layer}.{self.where}@" + ",".join(map(str, self.positions))


AnyEdit = NeuronEdit | HeadEdit | SteerEdit | FeatureEdit | PatchEdit


def check_edits(lm: LoadedModel, edits: Sequence[AnyEdit]) -> list[AnyEdit]:
    """The edits, each within this model's bounds (layer, neuron, head, vector width), at most MAX_EDITS."""
    info = lm.info
    if len(edits) > MAX_EDITS:
        raise InputError(f"{len(edits)} edits; the limit is {MAX_EDITS}.", field=EDITS_FIELD)
    if edits and not info.is_causal:
        raise InputError("Edits apply to causal language models only, not to the encoder "
                         f"{lm.model_id}.", field=EDITS_FIELD)
    for edit in edits:
        if isinstance(edit, FeatureEdit) and edit.sae is None:
            raise InputError(f"{edit.text}: no SAE attached (resolve_edits).", field=EDITS_FIELD)
        if not 0 <= edit.layer < info.n_layers:
            raise InputError(f"{edit.text}: layer {edit.layer} is outside 0..{info.n_layers - 1}.", field=EDITS_FIELD)
        if isinstance(edit, NeuronEdit) and not 0 <= edit.neuron < info.d_mlp:
            raise InputError(f"{edit.text}: neuron {edit.neuron} is outside 0..{info.d_mlp - 1}.", field=EDITS_FIELD)
        if isinstance(edit, HeadEdit) and not 0 <= edit.head < info.n_heads:
            raise InputError(f"{edit.text}: head {edit.head} is outside 0..{info.n_heads - 1}.", field=EDITS_FIELD)
        if isinstance(edit, (NeuronEdit, HeadEdit)) and edit.value is None:
            raise InputError(f"{edit.text}: the corpus mean was not resolved (resolve_edits).", field=EDITS_FIELD)
        if isinstance(edit, FeatureEdit):
            if not 0 <= edit.feature < edit.sae.d_sae:
                raise InputError(f"{edit.text}: feature {edit.feature} is outside 0..{edit.sae.d_sae - 1} "
                                 f"(the SAE {edit.ref} has {edit.sae.d_sae:,}).", field=EDITS_FIELD)
        if isinstance(edit, PatchEdit) and (edit.values is None or edit.values.shape != (len(edit.positions),
                                                                                      info.d_model)):
            raise InputError(f"{edit.text}: the patch needs the source run's values at its positions.",
                             field=EDITS_FIELD)
        if isinstance(edit, SteerEdit):
            if edit.vector is None:
                raise InputError(f"{edit.text}: the steering vector was not resolved (resolve_edits).",
                                 field=EDITS_FIELD)
            if edit.vector.shape != (info.d_model,):
                raise InputError(f"{edit.text}: the steering vector has shape {tuple(edit.vector.shape)}; this "
                                 f"model's residual stream has width {info.d_model}.", field=EDITS_FIELD)
            if edit.where not in STEER_SITES:
                raise InputError(f"{edit.text}: steer at {', '.join(STEER_SITES)}, not {edit.where}.", field=EDITS_FIELD)
    return list(edits)


def capture_edits(lm: LoadedModel, edits: Sequence[AnyEdit]) -> dict[str, Edit]:
    """``capture``'s edits for an edit list: site -> one function applying that site's edits in order."""
    by_site: dict[str, list[AnyEdit]] = {}
    for edit in check_edits(lm, edits):
        by_site.setdefault(edit.site, []).append(edit)

    def chain(items: list[AnyEdit]) -> Edit:
        def run(x: torch.Tensor) -> torch.Tensor:
            for item in items:
                x = item.apply(x)
            return x

        return run

    return {site: chain(items) for site, items in by_site.items()}


EDIT_RE = re.compile(r"^(neuron|head):L(\d+)\.([NH])(\d+)(?:=(mean|-?[\d.eE+-]+))?$")
STEER_RE = re.compile(r"^steer:L(\d+)\.(resid_pre|resid_post)(?:@([\d,\- ]+))?(?:\*(-?[\d.eE+-]+))?"
                      r"(?:=feature\[([^\]]+)\]:F(\d+))?$")
FEATURE_RE = re.compile(r"^feature\[([^\]]+)\]:F(\d+)(?:=(-?[\d.eE+-]+))?$")
PATCH_RE = re.compile(r"^patch:L(\d+)\.(resid_pre|resid_post)@([\d,\- ]+)$")
FORMS = ("neuron:L5.N123[=value|=mean], head:L3.H2[=value|=mean], "
         "steer:L15.resid_post[@2-4]*8=feature[embedded]:F12, feature[embedded]:F12[=value] or patch:L6.resid_pre@3-4")


def _number(text: str, item: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"'{item}': '{text}' is not a number.", field=EDITS_FIELD) from None


def parse_edits(text: str | None, vectors: Sequence[torch.Tensor] = (), n_tokens: int | None = None,
                sources: Sequence[str] = ()) -> list[AnyEdit]:
    """Edits from their text form; the i-th ``steer`` takes ``vectors[i]``, the i-th ``patch`` the source
    text ``sources[i]``; means, SAEs and patch values are attached by :func:`resolve_edits`. Bad items name
    the expected form."""
    if text is None or not text.strip():
        return []
    items = [part.strip() for part in text.split(";") if part.strip()]
    if len(items) > MAX_EDITS:
        raise InputError(f"{len(items)} edits; the limit is {MAX_EDITS}.", field=EDITS_FIELD)
    edits: list[AnyEdit] = []
    steer_count = 0
    for item in items:
        match = EDIT_RE.match(item)
        if match:
            kind, layer, letter, unit, value = match.groups()
            if (kind == "neuron") != (letter == "N"):
                raise InputError(f"'{item}': a neuron is L<layer>.N<index>, a head L<layer>.H<index>.", field=EDITS_FIELD)
            mean = value == "mean"
            number = None if mean else (_number(value, item) if value else 0.0)
            edits.append(NeuronEdit(int(layer), int(unit), number, mean) if kind == "neuron"
                         else HeadEdit(int(layer), int(unit), number, mean))
            continue
        match = FEATURE_RE.match(item)
        if match:
            ref, feature, value = match.groups()
            edits.append(FeatureEdit(ref.strip(), int(feature), _number(value, item) if value else 0.0))
            continue
        match = PATCH_RE.match(item)
        if match:
            layer, where, positions = match.groups()
            patches = sum(isinstance(e, PatchEdit) for e in edits)
            if patches >= len(sources) or not str(sources[patches]).strip():
                raise InputError(f"'{item}' needs a source text to patch from ({len(sources)} given).", field=EDITS_FIELD)
            high = (n_tokens - 1) if n_tokens else 1_000_000
            at = parse_ranges(positions, "Patch positions", 0, high, field=EDITS_FIELD) or []
            edits.append(PatchEdit(int(layer), where, tuple(at), None, str(sources[patches])))
            continue
        match = STEER_RE.match(item)
        if match:
            layer, where, positions, scale, ref, feature = match.groups()
            high = (n_tokens - 1) if n_tokens else 1_000_000
            at = parse_ranges(positions, "Steering positions", 0, high, field=EDITS_FIELD) if positions else None
            scale_value = _number(scale, item) if scale else 1.0
            if ref is not None:  # along an SAE feature's decoder direction (resolved with the SAE)
                edits.append(SteerEdit(int(layer), None, scale_value, tuple(at or ()), where, (ref.strip(), int(feature))))
                continue
            if steer_count >= len(vectors):
                raise InputError(f"'{item}' needs steering vector {steer_count + 1}; {len(vectors)} given (or steer "
                                 "along a feature: ...*8=feature[embedded]:F12).", field=EDITS_FIELD)
            edits.append(SteerEdit(int(layer), vectors[steer_count], scale_value, tuple(at or ()), where))
            steer_count += 1
            continue
        raise InputError(f"'{item}' is not an edit: use {FORMS}.", field=EDITS_FIELD)
    return edits


def edits_text(edits: Sequence[AnyEdit]) -> str:
    """The text form of an edit list (``parse_edits`` reads it back, vectors aside)."""
    return ";".join(edit.text for edit in edits)


def edits_key(edits: Sequence[AnyEdit]) -> str:
    """What an edited run is cached under: the text form plus a digest of every tensor and source text the
    text form leaves out ('' for no edits, so clean runs keep their key)."""
    if not edits:
        return ""
    digest = hashlib.sha256()
    for edit in edits:
        digest.update(edit.text.encode())
        for part in (getattr(edit, "vector", None), getattr(edit, "values", None), getattr(edit, "value", None)):
            if isinstance(part, torch.Tensor):
                digest.update(part.detach().float().cpu().numpy().tobytes())
        if isinstance(edit, PatchEdit):
            digest.update(edit.source.encode("utf-8", "surrogatepass"))
        if isinstance(edit, FeatureEdit) and edit.sae is not None:
            digest.update(str(getattr(edit.sae, "path", None) or getattr(edit.sae, "ref", "")).encode())
    return f"{edits_text(edits)}#{digest.hexdigest()[:16]}"


def resolve_edits(runtime: Any, model_id: str, edits: Sequence[AnyEdit],
                  sae: Callable[[str], FeatureSource] | None = None) -> list[AnyEdit]:
    """Edits made concrete: ``=mean`` values from :func:`corpus_means`, SAEs attached (``sae(ref)``), patch
    values from the source text's run (positions within both texts). Then checked against the model."""
    lm = runtime.model(model_id)
    out: list[AnyEdit] = []
    means: dict[str, torch.Tensor] | None = None
    for edit in edits:
        if isinstance(edit, (NeuronEdit, HeadEdit)) and edit.mean:
            if means is None:
                means = corpus_means(runtime, model_id)
            if not 0 <= edit.layer < lm.info.n_layers:
                raise InputError(f"{edit.text}: layer {edit.layer} is outside 0..{lm.info.n_layers - 1}.",
                                 field=EDITS_FIELD)
            table = means[edit.site]
            unit = edit.neuron if isinstance(edit, NeuronEdit) else edit.head
            if not 0 <= unit < table.shape[0]:
                raise InputError(f"{edit.text}: index {unit} is outside 0..{table.shape[0] - 1}.", field=EDITS_FIELD)
            edit = replace(edit, value=float(table[unit]) if isinstance(edit, NeuronEdit) else table[unit].clone())
        elif isinstance(edit, FeatureEdit) and edit.sae is None:
            if sae is None:
                raise InputError(f"{edit.text}: feature edits need an SAE (the Features page's).", field=EDITS_FIELD)
            edit = replace(edit, sae=sae(edit.ref))
        elif isinstance(edit, SteerEdit) and edit.vector is None and edit.feature is not None:
            if sae is None:
                raise InputError(f"{edit.text}: steering along a feature needs its SAE.", field=EDITS_FIELD)
            source = sae(edit.feature[0])
            if not 0 <= edit.feature[1] < source.d_sae:
                raise InputError(f"{edit.text}: feature {edit.feature[1]} is outside 0..{source.d_sae - 1}.",
                                 field=EDITS_FIELD)
            edit = replace(edit, vector=source.W_dec()[edit.feature[1]].float().clone())
        elif isinstance(edit, PatchEdit) and edit.values is None:
            source = runtime.run(model_id, edit.source, [edit.site])
            too_far = [p for p in edit.positions if p >= source.n_tokens]
            if too_far:
                raise InputError(f"{edit.text}: the source text has {source.n_tokens} tokens, so positions "
                                 f"0..{source.n_tokens - 1}; got {too_far[0]}.", field=EDITS_FIELD)
            edit = replace(edit, values=source.act(edit.site)[list(edit.positions)].float().cpu().clone())
        out.append(edit)
    return check_edits(lm, out)


MEAN_TOKENS = 8192  # tokens of the offline training corpus behind ``=mean``
MEAN_SEQ_LEN = 128


def corpus_means(runtime: Any, model_id: str, n_tokens: int = MEAN_TOKENS) -> dict[str, torch.Tensor]:
    """Mean of every MLP neuron (``mlp.hook_post`` [d_mlp]) and every head's z (``attn.hook_z`` [H, d_head])
    over ``n_tokens`` of the offline training corpus in rows of ``MEAN_SEQ_LEN``, each row's first position
    (the attention sink) left out; one pass, kept on disk per model."""
    from analysis.cache import content_key

    key = content_key("corpus-means", 2, model_id, n_tokens, MEAN_SEQ_LEN)
    return runtime.disk.get_or_compute(key, lambda: _corpus_means(runtime, model_id, n_tokens))


def _corpus_means(runtime: Any, model_id: str, n_tokens: int) -> dict[str, torch.Tensor]:
    from analysis.capture import capture
    from analysis.corpus.training import training_corpus
    from analysis.io import pack_rows

    lm = runtime.model(model_id)
    corpus = training_corpus(max_chars=n_tokens * 8, heldout_chars=0)
    rows = pack_rows(lm.tokenizer, corpus.train, n_tokens, MEAN_SEQ_LEN)
    sites = [f"blocks.{layer}.{name}" for layer in range(lm.info.n_layers) for name in ("mlp.hook_post", "attn.hook_z")]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    batch = 8
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        width = min(len(r) for r in chunk)
        ids = torch.tensor([r[:width] for r in chunk])

        def observer(site: str) -> Callable[[torch.Tensor], None]:
            def add(x: torch.Tensor) -> None:
                total = x[:, 1:].double().sum(dim=(0, 1)).cpu()
                sums[site] = sums[site] + total if site in sums else total
            return add

        capture(lm, ids, [], logits=False, observe={site: observer(site) for site in sites}, stop_early=True)
        count += ids.shape[0] * (ids.shape[1] - 1)
    shapes = {site: (lm.info.n_heads, lm.info.d_head) if site.endswith("attn.hook_z") else (-1,) for site in sums}
    return {site: (total / max(count, 1)).float().reshape(shapes[site]) for site, total in sums.items()}
