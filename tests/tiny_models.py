"""Tiny random-weight HF models of every supported architecture, for fast value tests."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertModel,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from analysis.models import LoadedModel, wrap_model

VOCAB = 96
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, max_position_embeddings=128)


def _build(name: str) -> torch.nn.Module:
    if name == "llama":
        return LlamaForCausalLM(LlamaConfig(**COMMON, num_key_value_heads=2))
    if name == "mistral":
        return MistralForCausalLM(MistralConfig(**COMMON, num_key_value_heads=2, sliding_window=64))
    if name == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**COMMON, num_key_value_heads=2))
    if name == "gemma":
        return GemmaForCausalLM(GemmaConfig(**COMMON, num_key_value_heads=1, head_dim=8))
    if name == "gemma2":
        return Gemma2ForCausalLM(Gemma2Config(**COMMON, num_key_value_heads=2, head_dim=8,
                                              sliding_window=64, attn_logit_softcapping=None,
                                              final_logit_softcapping=None))
    if name == "gemma3":  # two local layers (a 4-token window, shorter than the test texts) and a global one
        return Gemma3ForCausalLM(Gemma3TextConfig(**COMMON, num_key_value_heads=2, head_dim=8, sliding_window=4,
                                                  layer_types=["sliding_attention", "sliding_attention",
                                                               "full_attention"], query_pre_attn_scalar=8))
    if name == "gpt_neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=3, num_attention_heads=4,
                                                max_position_embeddings=128, rotary_pct=0.25))
    if name == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=128))
    if name == "bert":
        return BertModel(BertConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                    num_attention_heads=4, max_position_embeddings=128))
    raise ValueError(name)


ARCH_NAMES = ["llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3", "gpt_neox", "gpt2", "bert"]


def tiny_model(name: str, seed: int = 0) -> LoadedModel:
    """A random-weight model of architecture ``name`` with eager attention, wrapped for capture."""
    torch.manual_seed(seed)
    model = _build(name)
    model.config._attn_implementation = "eager"
    for module in model.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = "eager"
    # the id names the weights too: runtime memos are keyed by model id
    return wrap_model(f"tiny-{name}" if seed == 0 else f"tiny-{name}-seed{seed}", model, tokenizer=None)
