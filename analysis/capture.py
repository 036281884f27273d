"""One forward pass with PyTorch hooks on the HF model -> activations at TransformerLens-style sites.

Only the requested sites are kept; tensors stay on the model's device. Derived sites are computed
after the pass from captured pieces: ``hook_resid_mid`` (resid_pre + attn_out) and the rotary-applied
``attn.hook_rot_q/k`` (the model's own ``apply_rotary_pos_emb`` on the captured pre-rotary q/k and the
captured cos/sin), so DeepPeek's RoPE modes are exact. Hand-written because TransformerLens re-implements
each architecture (weights converted, numerics differ from HF); hooks keep HF's own numerics.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.sites import (
    ArchSpec,
    arch_for,
    available_sites,
    base_model_root,
    get_module,
    parse_site,
    site_supported,
)

Edit = Callable[[torch.Tensor], torch.Tensor]
Observer = Callable[[torch.Tensor], None]
EDITABLE = {
    "hook_embed", "ln_final.hook_normalized", "hook_resid_pre", "hook_resid_post", "hook_attn_out",
    "hook_mlp_out", "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "ln1.hook_normalized",
    "ln2.hook_normalized", "attn.hook_z",  # z is edited per head: the edit sees [B, T, H, d_head]
}


class _StopForward(Exception):
    """Raised by a hook once every requested site is captured (``stop_at_layer``)."""


@dataclass
class Capture:
    """Activations of one batched forward: ``acts[site]`` is [B, T, ...] (patterns [B, H, T, T])."""

    acts: dict[str, torch.Tensor]
    logits: torch.Tensor | None
    cache: Any = None  # the pass's keys and values (a transformers DynamicCache), when asked for


@dataclass
class Run:
    """One text through one model: tokens, logits [T, V] and activations by site (batch dim dropped)."""

    model_id: str
    text: str
    token_ids: list[int]
    tokens: list[str]
    logits: torch.Tensor | None
    acts: dict[str, torch.Tensor]
    sites: frozenset[str] = field(default_factory=frozenset)
    edits: str = ""  # analysis.edits.edits_key of the edits this run was made with ('' = clean)

    def act(self, site: str) -> torch.Tensor:
        try:
            return self.acts[site]
        except KeyError as exc:
            raise InputError(f"Site '{site}' was not captured in this run.") from exc

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @functools.cached_property
    def key(self) -> str:
        """A content hash of (model, text, token ids): what derived products of this run are cached under."""
        parts = [self.model_id, self.text, self.token_ids] + ([self.edits] if self.edits else [])
        blob = json.dumps(parts, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def nbytes(self) -> int:
        tensors = list(self.acts.values()) + ([self.logits] if self.logits is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors) + 64 * len(self.token_ids)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _split_heads(x: torch.Tensor, d_head: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], -1, d_head)


class _Hooks:
    """Registers the hooks needed for a set of sites and collects raw tensors by (layer, name)."""

    def __init__(self, model: Any, spec: ArchSpec, d_head: int, d_model: int) -> None:
        self.model, self.spec, self.d_head, self.d_model = model, spec, d_head, d_model
        self.root = base_model_root(model, spec)
        self.layers = get_module(self.root, spec.layers)
        self.raw: dict[tuple[int | None, str], Any] = {}
        self.handles: list[Any] = []
        self.stop_after: int | None = None

    def _out(self, module: Any, key: tuple[int | None, str], edit: Edit | None, observe: Observer | None = None,
             keep: bool = True, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        def hook(_mod: Any, _inp: Any, output: Any) -> Any:
            if edit is not None:
                new = edit(_first(output))
                output = (new, *output[1:]) if isinstance(output, tuple) else new
            if observe is not None:
                observe(_first(output).detach())
            if keep:
                value = _first(output).detach()
                self.raw[key] = transform(value) if transform is not None else value
            if key[1] == "block_out" and self.stop_after is not None and key[0] == self.stop_after:
                raise _StopForward
            return output if edit is not None else None

        self.handles.append(module.register_forward_hook(hook))

    def _tuple_item(self, module: Any, key: tuple[int | None, str], index: int) -> None:
        def hook(_mod: Any, _inp: Any, output: Any) -> None:
            self.raw[key] = output[index].detach() if output[index] is not None else None

        self.handles.append(module.register_forward_hook(hook))

    def _in(self, module: Any, key: tuple[int | None, str], edit: Edit | None, observe: Observer | None = None,
            keep: bool = True) -> None:
        def hook(_mod: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                value = args[0]
            else:
                name = next(iter(kwargs))
                value = kwargs[name]
            if edit is not None:
                value = edit(value)
                if args:
                    args = (value, *args[1:])
                else:
                    kwargs = dict(kwargs, **{name: value})
            if observe is not None:
                observe(value.detach())
            if keep:
                self.raw[key] = value.detach()
            return (args, kwargs) if edit is not None else None

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def _rotary(self, module: Any, layer: int) -> None:
        def hook(_mod: Any, _args: tuple, kwargs: dict) -> None:
            self.raw[(layer, "cos_sin")] = kwargs.get("position_embeddings")

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def add(self, layer: int | None, local: str, edit: Edit | None = None, observe: Observer | None = None,
            keep: bool = True) -> None:
        """Register what ``local`` needs at ``layer`` (idempotent per raw key). ``observe`` is called with the
        site's value during the pass; ``keep=False`` does not hold on to it (editable sites only)."""
        spec = self.spec
        io = {"observe": observe, "keep": keep}
        if layer is None:
            if local == "hook_embed":
                self._out(get_module(self.root, spec.embed), (None, local), edit, **io)
            else:
                self._out(get_module(self.root, spec.final_norm), (None, local), edit, **io)
            return
        block = self.layers[layer]
        mod = lambda path: get_module(block, path)  # noqa: E731
        key = (layer, local)
        if local == "hook_resid_pre":
            self._in(block, key, edit, **io)
        elif local == "hook_resid_post":
            self._out(block, (layer, "block_out"), edit, **io)
        elif local == "hook_resid_mid":
            if spec.family == "bert":
                self._out(mod("attention"), key, None)
            else:
                self.add(layer, "hook_resid_pre")
                self.add(layer, "hook_attn_out")
        elif local == "ln1.hook_normalized":
            self._out(mod(spec.ln1), key, edit, **io)
        elif local == "ln2.hook_normalized":
            self._out(mod(spec.ln2), key, edit, **io)
        elif local in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            which = local[-1]
            norm = {"q": spec.q_norm, "k": spec.k_norm}.get(which)
            if norm is not None:  # QK-norm: the normed [B, H, T, dh] heads, stored as [B, T, H * dh]
                self._out(mod(norm), key, None, transform=lambda x: x.transpose(1, 2).flatten(-2))
            elif spec.qkv in ("separate", "bert"):
                self._out(mod(getattr(spec, which)), key, None)
            else:
                self._out(mod(spec.q), (layer, "qkv"), None)
        elif local in ("attn.hook_rot_q", "attn.hook_rot_k"):
            self.add(layer, "attn.hook_q")
            self.add(layer, "attn.hook_k")
            self._rotary(mod(spec.attn), layer)
        elif local == "attn.hook_pattern":
            self._tuple_item(mod(spec.attn), key, 1)
        elif local == "attn.hook_z":
            self._in(mod(spec.o), key, None if edit is None else _per_head(edit, self.d_head), **io)
        elif local == "hook_attn_out":
            self._out(mod(spec.attn_out_module), key, edit, **io)
        elif local == "mlp.hook_pre":
            self._out(mod(spec.mlp_in), key, edit, **io)
        elif local == "mlp.hook_pre_linear":
            self._out(mod(spec.mlp_in_linear), key, edit, **io)
        elif local == "mlp.hook_post":
            self._in(mod(spec.mlp_down), key, edit, **io)
        elif local == "hook_mlp_out":
            self._out(mod(spec.mlp_out_module), key, edit, **io)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    # ---- assembling requested sites from raw pieces -------------------------------------------
    def _qkv(self, layer: int, which: str) -> torch.Tensor:
        spec, dh = self.spec, self.d_head
        if spec.qkv in ("separate", "bert"):
            return _split_heads(self.raw[(layer, f"attn.hook_{which}")], dh)
        fused = self.raw[(layer, "qkv")]
        index = "qkv".index(which)
        if spec.qkv == "neox":  # per head [q | k | v] blocks of d_head
            return _split_heads(fused, 3 * dh)[..., index * dh : (index + 1) * dh]
        return _split_heads(fused.split(self.d_model, dim=-1)[index], dh)  # gpt2: [Q | K | V]

    def _rot(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (layer, "rot") in self.raw:
            return self.raw[(layer, "rot")]
        cos, sin = self.raw[(layer, "cos_sin")]
        attn = get_module(self.layers[layer], self.spec.attn)
        apply = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        q, k = self._qkv(layer, "q"), self._qkv(layer, "k")
        q_rot, k_rot = apply(q, k, cos, sin, unsqueeze_dim=2)
        self.raw[(layer, "rot")] = (q_rot, k_rot)
        return q_rot, k_rot

    def assemble(self, layer: int | None, local: str) -> torch.Tensor:
        if layer is None:
            return self.raw[(None, local)]
        if local == "hook_resid_post":
            return self.raw[(layer, "block_out")]
        if local in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
            return self._qkv(layer, local[-1])
        if local in ("attn.hook_rot_q", "attn.hook_rot_k"):
            q_rot, k_rot = self._rot(layer)
            return q_rot if local.endswith("q") else k_rot
        if local == "attn.hook_z":
            return _split_heads(self.raw[(layer, local)], self.d_head)
        if local == "hook_resid_mid" and self.spec.family != "bert":
            return self.raw[(layer, "hook_resid_pre")] + self.raw[(layer, "hook_attn_out")]
        return self.raw[(layer, local)]


@contextmanager
def _attention_implementation(model: Any, fused: bool) -> Iterator[None]:
    """Switch to PyTorch SDPA for one pass (same math, fused; no attention weights) and back to the
    configured implementation (eager, which the attention views need). Callers hold the model lock."""
    current = getattr(model.config, "_attn_implementation", None)
    switch = (fused and current == "eager" and getattr(model, "_supports_sdpa", False)
              and hasattr(model, "set_attn_implementation"))
    if switch:
        model.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(current)


def capture(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    sites: Iterable[str] | str = (),
    *,
    attention_mask: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    logits: bool = True,
    edits: dict[str, Edit] | None = None,
    observe: dict[str, Observer] | None = None,
    stop_early: bool = False,
    fused_attention: bool = False,
    past: Any = None,
    keep_cache: bool = False,
    resume: tuple[int, torch.Tensor] | None = None,
) -> Capture:
    """Run one batched forward pass and return the requested sites ([B, T, ...]) and logits.

    The one model call path of Glassbox (every page, job and benchmark forward goes through here, and
    only here is ``forward_count`` counted). ``sites="all"`` captures every site the architecture has.
    ``edits`` maps a site to a function that replaces its value during the pass (steering, SAE splicing).
    ``observe`` maps a site to a function that reads its value during the pass (pooling, folding a batch
    into an index) without the capture holding on to it. ``stop_early`` ends the pass after the last block
    that holds a requested or observed site (no logits then). ``fused_attention`` runs the pass with SDPA
    (faster; attention patterns cannot be captured then). ``past`` (a transformers Cache of a causal model)
    continues an earlier pass: ``input_ids`` are the tokens after the cache's length; ``keep_cache`` returns
    the pass's keys and values in ``Capture.cache`` (every layer full length, no sliding-window trimming).
    ``resume=(layer, stream)`` starts the pass at block ``layer`` with ``stream`` [B, T, d] as its input (an
    earlier pass's ``hook_resid_pre`` there): the blocks below do not run, so no site below it exists.
    """
    info = lm.info
    spec = arch_for(lm.model)
    wanted = available_sites(spec, info.n_layers) if sites == "all" else list(dict.fromkeys(sites))
    parsed = []
    for site in wanted:
        layer, local = parse_site(site, info.n_layers)
        if layer is not None and not site_supported(spec, local):
            raise InputError(f"Site '{site}' does not exist for the {spec.family} architecture.")
        if fused_attention and local == "attn.hook_pattern":
            raise InputError("Attention patterns need eager attention: capture them without fused_attention.")
        parsed.append((site, layer, local))
    edits = dict(edits or {})
    observe = observe or {}
    if resume is not None:
        edits.pop("hook_embed", None)  # the embedding is replaced at the resumed layer
        used = parsed + [(site, *parse_site(site, info.n_layers)) for site in [*edits, *observe]]
        edits = _resumed(resume, edits, used, info.n_layers)
    requested = {(layer, local) for _site, layer, local in parsed}
    direct: dict[tuple[int | None, str], dict[str, Any]] = {}
    for site, fn in [*((s, ("edit", f)) for s, f in edits.items()), *((s, ("observe", f)) for s, f in observe.items())]:
        layer, local = parse_site(site, info.n_layers)
        if local not in EDITABLE:
            kind = "edited" if fn[0] == "edit" else "observed during the pass"
            raise InputError(f"Site '{site}' cannot be {kind} (possible: {', '.join(sorted(EDITABLE))}).")
        direct.setdefault((layer, local), {})[fn[0]] = fn[1]
    # The lock spans hook registration to removal: hooks live on the shared model, so a concurrent
    # forward of another request must never fire them (or it would capture the wrong text).
    with lm.lock:
        hooks = _Hooks(lm.model, spec, info.d_head, info.d_model)
        try:
            for (layer, local), fns in direct.items():
                hooks.add(layer, local, fns.get("edit"), fns.get("observe"), keep=(layer, local) in requested)
            for _site, layer, local in parsed:
                if (layer, local) not in direct:
                    hooks.add(layer, local)
            layers = [p[1] for p in parsed] + [key[0] for key in direct]
            last_layer = max((x for x in layers if x is not None), default=None)
            early = stop_early and last_layer is not None and all(x is not None for x in layers)
            if early:
                hooks.add(last_layer, "hook_resid_post", keep=(last_layer, "hook_resid_post") in requested)
                hooks.stop_after = last_layer
            device_ids = input_ids.to(lm.device) if input_ids is not None else None
            mask = attention_mask.to(lm.device) if attention_mask is not None else None
            embeds = inputs_embeds.to(lm.device) if inputs_embeds is not None else None
            kwargs: dict[str, Any] = {"attention_mask": mask}
            if embeds is not None:
                kwargs["inputs_embeds"] = embeds
            else:
                kwargs["input_ids"] = device_ids
            if past is not None or keep_cache:
                if not info.is_causal:
                    raise InputError("Keys and values are reused only for causal models.")
                kwargs["past_key_values"] = past if past is not None else _full_cache()
            if resume is not None:
                skipped = [(i, hooks.layers[i]) for i in range(resume[0])]
                for i, _block in skipped:
                    hooks.layers[i] = _SkippedBlock()
            output = None
            runner = lm.model if (logits and info.is_causal and not early) else lm.model.base_model
            with torch.inference_mode(), _attention_implementation(lm.model, fused_attention):
                lm.forward_count += 1
                try:
                    use_cache = "past_key_values" in kwargs
                    output = runner(**kwargs, use_cache=use_cache) if info.is_causal else runner(**kwargs)
                except _StopForward:
                    output = None
            acts = {site: hooks.assemble(layer, local) for site, layer, local in parsed}
        finally:
            if resume is not None:
                for i, block in skipped:
                    hooks.layers[i] = block
            hooks.remove()
    out_logits = getattr(output, "logits", None) if output is not None else None
    cache = kwargs.get("past_key_values") if keep_cache and output is not None else None
    return Capture(acts=acts, logits=out_logits, cache=cache)


def _per_head(edit: Edit, d_head: int) -> Edit:
    """An edit of z written per head ([B, T, H, d_head]) applied to the output projection's flat input."""
    return lambda flat: edit(flat.unflatten(-1, (-1, d_head))).flatten(-2)


class _SkippedBlock(torch.nn.Module):
    """Stands in for a block below a resumed pass's first layer: hands its input stream on unchanged."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def _resumed(resume: tuple[int, torch.Tensor], edits: dict[str, Edit], used: list, n_layers: int) -> dict[str, Edit]:
    """The edits of a resumed pass: ``stream`` replaces block ``layer``'s input, before any edit of it."""
    layer, stream = resume
    if not 0 <= layer < n_layers:
        raise InputError(f"A pass resumes at a layer in 0-{n_layers - 1}, not {layer}.")
    below = sorted({site for site, at, _local in used
                    if (at is not None and at < layer) or (at is None and not site.startswith("ln_final"))})
    if below:
        raise InputError(f"A pass resumed at layer {layer} has no site below it: {', '.join(below)}.")
    site = f"blocks.{layer}.hook_resid_pre"
    then = edits.get(site)

    def replace(x: torch.Tensor) -> torch.Tensor:
        if stream.shape[1:] != x.shape[1:]:
            raise InputError(f"The resumed stream has shape {tuple(stream.shape)}; the pass has {tuple(x.shape)}.")
        value = stream.to(x.device, x.dtype)
        return then(value) if then is not None else value

    return edits | {site: replace}


def _full_cache() -> Any:
    """An empty cache whose layers keep every position (the model's own default trims sliding-window layers)."""
    from transformers import DynamicCache

    return DynamicCache()


def tokenize(lm: LoadedModel, text: str, max_tokens: int) -> list[int]:
    """Token ids of ``text`` with the tokenizer's special tokens; bounded by ``max_tokens``."""
    if not text or not text.strip():
        raise InputError("The text is empty: type or pick a sample.")
    ids = lm.tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(ids) > max_tokens:
        raise InputError(
            f"The text has {len(ids)} tokens; the limit is {max_tokens} (max_tokens in config.py). Shorten it."
        )
    return list(ids)


def run_text(lm: LoadedModel, text: str, sites: Iterable[str] | str = (), *, max_tokens: int = 1024,
             edits: dict[str, Edit] | None = None, edits_key: str = "") -> Run:
    """Tokenize one text, run it once (with ``edits``, named ``edits_key``), and return a :class:`Run`
    (batch dimension removed)."""
    ids = tokenize(lm, text, max_tokens)
    result = capture(lm, torch.tensor([ids]), sites, logits=lm.info.is_causal, edits=edits)
    acts = {site: value[0] for site, value in result.acts.items()}
    logits = result.logits[0].float() if result.logits is not None else None
    return Run(
        model_id=lm.model_id,
        text=text,
        token_ids=ids,
        tokens=lm.decode(ids),
        logits=logits,
        acts=acts,
        sites=frozenset(acts),
        edits=edits_key,
    )
