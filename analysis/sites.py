"""Per-architecture site maps: where each TransformerLens-style hook lives in an HF model.

Site names follow TransformerLens so sae-lens SAEs attach by ``hook_name``:
``hook_embed``, ``blocks.{l}.hook_resid_pre|mid|post``, ``blocks.{l}.ln1.hook_normalized``,
``blocks.{l}.ln2.hook_normalized``, ``blocks.{l}.attn.hook_q|k|v|rot_q|rot_k|z|pattern``,
``blocks.{l}.hook_attn_out``, ``blocks.{l}.mlp.hook_pre|pre_linear|post``, ``blocks.{l}.hook_mlp_out``,
``ln_final.hook_normalized``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from analysis.errors import InputError


@dataclass(frozen=True)
class ArchSpec:
    """Module paths (dotted, relative to the model or to one block) for one architecture family."""

    family: str
    layers: str  # ModuleList of blocks
    embed: str  # token embedding module
    final_norm: str | None
    attn: str  # attention module inside a block; its output is (attn_out, weights)
    qkv: str  # "separate" | "neox" | "gpt2" | "bert"
    q: str
    k: str
    v: str
    o: str  # output projection (its input is z)
    ln1: str | None
    ln2: str | None
    mlp: str | None  # whole MLP module (output = mlp_out) or None when mlp_out_module is used
    mlp_in: str  # gate / up-projection whose output is the pre-activation
    mlp_in_linear: str | None  # the linear half of a gated MLP
    mlp_down: str  # down projection: its input is mlp.hook_post
    attn_out_module: str  # module whose output is what attention adds to the residual stream
    mlp_out_module: str  # module whose output is what the MLP adds to the residual stream
    rotary: bool
    parallel: bool = False  # GPT-NeoX/Pythia parallel attention+MLP
    q_norm: str | None = None  # per-head RMSNorm of the queries before rotary (QK-norm: Gemma 3, Qwen3, OLMo2)
    k_norm: str | None = None


LLAMA = ArchSpec(
    family="llama", layers="model.layers", embed="model.embed_tokens", final_norm="model.norm",
    attn="self_attn", qkv="separate", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
    o="self_attn.o_proj", ln1="input_layernorm", ln2="post_attention_layernorm", mlp="mlp",
    mlp_in="mlp.gate_proj", mlp_in_linear="mlp.up_proj", mlp_down="mlp.down_proj",
    attn_out_module="self_attn", mlp_out_module="mlp", rotary=True,
)
GEMMA2 = ArchSpec(
    family="gemma2", layers="model.layers", embed="model.embed_tokens", final_norm="model.norm",
    attn="self_attn", qkv="separate", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
    o="self_attn.o_proj", ln1="input_layernorm", ln2="pre_feedforward_layernorm", mlp="mlp",
    mlp_in="mlp.gate_proj", mlp_in_linear="mlp.up_proj", mlp_down="mlp.down_proj",
    attn_out_module="post_attention_layernorm", mlp_out_module="post_feedforward_layernorm", rotary=True,
)
# Gemma 3: Gemma 2's sandwich norms (pre/post attention, pre/post feed-forward) plus QK-norm, local
# (sliding-window) and global layers with their own rotary bases (HF hands each layer its own cos/sin),
# and the sqrt(d) embedding scale inside the embedding module (hook_embed is after it). hook_q / hook_k
# are the per-head-normed queries and keys, i.e. what rotary rotates and what the scores use.
GEMMA3 = replace(GEMMA2, family="gemma3", q_norm="self_attn.q_norm", k_norm="self_attn.k_norm")
GPT_NEOX = ArchSpec(
    family="gpt_neox", layers="gpt_neox.layers", embed="gpt_neox.embed_in", final_norm="gpt_neox.final_layer_norm",
    attn="attention", qkv="neox", q="attention.query_key_value", k="attention.query_key_value",
    v="attention.query_key_value", o="attention.dense", ln1="input_layernorm", ln2="post_attention_layernorm",
    mlp="mlp", mlp_in="mlp.dense_h_to_4h", mlp_in_linear=None, mlp_down="mlp.dense_4h_to_h",
    attn_out_module="post_attention_dropout", mlp_out_module="post_mlp_dropout", rotary=True, parallel=True,
)
GPT2 = ArchSpec(
    family="gpt2", layers="transformer.h", embed="transformer.wte", final_norm="transformer.ln_f",
    attn="attn", qkv="gpt2", q="attn.c_attn", k="attn.c_attn", v="attn.c_attn", o="attn.c_proj",
    ln1="ln_1", ln2="ln_2", mlp="mlp", mlp_in="mlp.c_fc", mlp_in_linear=None, mlp_down="mlp.c_proj",
    attn_out_module="attn", mlp_out_module="mlp", rotary=False,
)
BERT = ArchSpec(
    family="bert", layers="encoder.layer", embed="embeddings.word_embeddings", final_norm=None,
    attn="attention.self", qkv="bert", q="attention.self.query", k="attention.self.key",
    v="attention.self.value", o="attention.output.dense", ln1=None, ln2=None, mlp=None,
    mlp_in="intermediate.dense", mlp_in_linear=None, mlp_down="output.dense",
    attn_out_module="attention.output.dense", mlp_out_module="output.dense", rotary=False,
)

ARCHS: dict[str, ArchSpec] = {
    "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "gemma": LLAMA, "olmo": LLAMA,
    "gemma2": GEMMA2, "gemma3_text": GEMMA3, "gpt_neox": GPT_NEOX, "gpt2": GPT2, "bert": BERT,
}

LAYER_SITES = (
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
    "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post",
    "hook_mlp_out", "hook_resid_post",
)
SITE_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
SITE_LABELS = {
    "hook_resid_pre": "residual stream, block input",
    "hook_resid_mid": "residual stream, after attention",
    "hook_resid_post": "residual stream, block output",
    "ln1.hook_normalized": "attention input (normalized)",
    "ln2.hook_normalized": "MLP input (normalized)",
    "attn.hook_q": "queries (before rotary)",
    "attn.hook_k": "keys (before rotary)",
    "attn.hook_v": "values",
    "attn.hook_rot_q": "queries (rotary applied)",
    "attn.hook_rot_k": "keys (rotary applied)",
    "attn.hook_z": "attention heads' mixed values (z)",
    "attn.hook_pattern": "attention pattern",
    "hook_attn_out": "attention output",
    "mlp.hook_pre": "MLP pre-activation",
    "mlp.hook_pre_linear": "MLP linear (up) branch",
    "mlp.hook_post": "MLP neurons (post-activation)",
    "hook_mlp_out": "MLP output",
}


def arch_for(model: Any) -> ArchSpec:
    """The site map for a loaded HF model (by ``config.model_type``)."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in ARCHS:
        return ARCHS[model_type]
    if hasattr(model, "model") and hasattr(model.model, "layers"):
        return LLAMA  # most recent decoder-only HF models follow the Llama layout
    raise InputError(f"Architecture '{model_type}' is not supported (supported: {', '.join(sorted(ARCHS))}).")


def get_module(root: Any, path: str | None) -> Any:
    """Resolve a dotted module path; BERT's AutoModel has no ``bert.`` prefix, causal heads do."""
    if path is None:
        return None
    node = root
    for part in path.split("."):
        node = getattr(node, part)
    return node


def base_model_root(model: Any, spec: ArchSpec) -> Any:
    """For BERT heads (BertForMaskedLM) the encoder lives under ``model.bert``."""
    if spec.family == "bert" and hasattr(model, "bert"):
        return model.bert
    return model


def available_sites(spec: ArchSpec, n_layers: int) -> list[str]:
    """Every site this architecture offers, in forward order."""
    per_layer = [s for s in LAYER_SITES if site_supported(spec, s)]
    sites = ["hook_embed"]
    for layer in range(n_layers):
        sites.extend(f"blocks.{layer}.{s}" for s in per_layer)
    if spec.final_norm:
        sites.append("ln_final.hook_normalized")
    return sites


def site_supported(spec: ArchSpec, local: str) -> bool:
    if local in ("attn.hook_rot_q", "attn.hook_rot_k"):
        return spec.rotary
    if local == "mlp.hook_pre_linear":
        return spec.mlp_in_linear is not None
    if local in ("ln1.hook_normalized", "ln2.hook_normalized"):
        return getattr(spec, local[:3]) is not None
    return local in LAYER_SITES


def parse_site(site: str, n_layers: int) -> tuple[int | None, str]:
    """``blocks.3.hook_resid_post`` -> (3, "hook_resid_post"); global sites -> (None, site)."""
    if site in ("hook_embed", "ln_final.hook_normalized"):
        return None, site
    match = SITE_RE.match(site)
    if not match or match.group(2) not in LAYER_SITES:
        raise InputError(f"Unknown site '{site}': expected e.g. 'blocks.0.hook_resid_post'.")
    layer = int(match.group(1))
    if not 0 <= layer < n_layers:
        raise InputError(f"Layer {layer} is out of range: this model has layers 0..{n_layers - 1}.")
    return layer, match.group(2)


def site_name(layer: int, local: str) -> str:
    return f"blocks.{layer}.{local}"
