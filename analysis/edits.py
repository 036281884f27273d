"""Edits every page can apply to a run: ablate a neuron or an attention head, add a steering vector.

An edit list becomes ``capture``'s ``edits`` (site -> function), several edits of one site composed in
list order, so an edited run is one forward with hooks, never a second code path:

- ``neuron``: ``blocks.{l}.mlp.hook_post[..., n]`` (the down projection's input) set to ``value``
  (0 = zero ablation; a mean over a corpus is given as the value);
- ``head``: ``blocks.{l}.attn.hook_z[..., h, :]`` (the head's input to the output projection) set to
  ``value`` (0 = zero ablation);
- ``steer``: ``vector * scale`` added to a residual site (``hook_resid_pre`` / ``hook_resid_post``) at
  chosen positions (all when none), e.g. an SAE feature's decoder direction or ActAdd's difference of
  two prompts' residuals.

Text form (URL, API): edits joined by ``;`` — ``neuron:L5.N123``, ``neuron:L5.N123=0.25``,
``head:L3.H2``, ``steer:L6.resid_pre@2-4*8`` (the vector itself is passed beside the text). At most
``MAX_EDITS`` edits; every bound is named in the error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.params import parse_ranges

MAX_EDITS = 16
STEER_SITES = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post"}
Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NeuronEdit:
    layer: int
    neuron: int
    value: float = 0.0

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.mlp.hook_post"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., self.neuron] = self.value
        return x

    @property
    def text(self) -> str:
        return f"neuron:L{self.layer}.N{self.neuron}" + (f"={self.value:g}" if self.value else "")


@dataclass(frozen=True)
class HeadEdit:
    layer: int
    head: int
    value: float = 0.0

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[..., self.head, :] = self.value
        return z

    @property
    def text(self) -> str:
        return f"head:L{self.layer}.H{self.head}" + (f"={self.value:g}" if self.value else "")


@dataclass(frozen=True)
class SteerEdit:
    layer: int
    vector: torch.Tensor  # [d_model]
    scale: float = 1.0
    positions: tuple[int, ...] = ()  # () = every position
    where: str = "resid_pre"

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
        return f"steer:L{self.layer}.{self.where}{at}*{self.scale:g}"


AnyEdit = NeuronEdit | HeadEdit | SteerEdit


def check_edits(lm: LoadedModel, edits: Sequence[AnyEdit]) -> list[AnyEdit]:
    """The edits, each within this model's bounds (layer, neuron, head, vector width), at most MAX_EDITS."""
    info = lm.info
    if len(edits) > MAX_EDITS:
        raise InputError(f"{len(edits)} edits; the limit is {MAX_EDITS}.", field="edits")
    if edits and not info.is_causal:
        raise InputError("Edits apply to causal language models only, not to the encoder "
                         f"{lm.model_id}.", field="edits")
    for edit in edits:
        if not 0 <= edit.layer < info.n_layers:
            raise InputError(f"{edit.text}: layer {edit.layer} is outside 0..{info.n_layers - 1}.", field="edits")
        if isinstance(edit, NeuronEdit) and not 0 <= edit.neuron < info.d_mlp:
            raise InputError(f"{edit.text}: neuron {edit.neuron} is outside 0..{info.d_mlp - 1}.", field="edits")
        if isinstance(edit, HeadEdit) and not 0 <= edit.head < info.n_heads:
            raise InputError(f"{edit.text}: head {edit.head} is outside 0..{info.n_heads - 1}.", field="edits")
        if isinstance(edit, SteerEdit):
            if edit.vector.shape != (info.d_model,):
                raise InputError(f"{edit.text}: the steering vector has shape {tuple(edit.vector.shape)}; this "
                                 f"model's residual stream has width {info.d_model}.", field="edits")
            if edit.where not in STEER_SITES:
                raise InputError(f"{edit.text}: steer at {', '.join(STEER_SITES)}, not {edit.where}.", field="edits")
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


EDIT_RE = re.compile(r"^(neuron|head):L(\d+)\.([NH])(\d+)(?:=(-?[\d.eE+-]+))?$")
STEER_RE = re.compile(r"^steer:L(\d+)\.(resid_pre|resid_post)(?:@([\d,\- ]+))?(?:\*(-?[\d.eE+-]+))?$")


def parse_edits(text: str | None, vectors: Sequence[torch.Tensor] = (), n_tokens: int | None = None) -> list[AnyEdit]:
    """Edits from their text form; the i-th ``steer`` takes ``vectors[i]``. Bad items name the expected form."""
    if text is None or not text.strip():
        return []
    items = [part.strip() for part in text.split(";") if part.strip()]
    if len(items) > MAX_EDITS:
        raise InputError(f"{len(items)} edits; the limit is {MAX_EDITS}.", field="edits")
    edits: list[AnyEdit] = []
    steer_count = 0
    for item in items:
        match = EDIT_RE.match(item)
        if match:
            kind, layer, letter, unit, value = match.groups()
            if (kind == "neuron") != (letter == "N"):
                raise InputError(f"'{item}': a neuron is L<layer>.N<index>, a head L<layer>.H<index>.", field="edits")
            number = float(value) if value else 0.0
            edits.append(NeuronEdit(int(layer), int(unit), number) if kind == "neuron"
                         else HeadEdit(int(layer), int(unit), number))
            continue
        match = STEER_RE.match(item)
        if match:
            layer, where, positions, scale = match.groups()
            if steer_count >= len(vectors):
                raise InputError(f"'{item}' needs steering vector {steer_count + 1}; {len(vectors)} given.",
                                 field="edits")
            high = (n_tokens - 1) if n_tokens else 1_000_000
            at = parse_ranges(positions, "Steering positions", 0, high, field="edits") if positions else None
            edits.append(SteerEdit(int(layer), vectors[steer_count], float(scale) if scale else 1.0,
                                   tuple(at or ()), where))
            steer_count += 1
            continue
        raise InputError(f"'{item}' is not an edit: use neuron:L5.N123[=value], head:L3.H2[=value] or "
                         "steer:L6.resid_pre[@2-4][*scale].", field="edits")
    return edits


def edits_text(edits: Sequence[AnyEdit]) -> str:
    """The text form of an edit list (``parse_edits`` reads it back, vectors aside)."""
    return ";".join(edit.text for edit in edits)
