"""One thread-safe model registry: loads each model once, keeps a few within a memory budget.

A model is named by a Hugging Face id (``EleutherAI/pythia-70m``, ``meta-llama/Llama-2-7b-hf``), a
local directory that looks like a hub snapshot, or an embedded id (``embedded:...``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from analysis.embedded import embedded_dir
from analysis.errors import GlassboxError, ModelLoadError
from analysis.io import TokenDecoder
from analysis.jobs import Job
from analysis.settings import Settings

ENCODER_TYPES = {"bert", "roberta", "distilbert", "electra", "xlm-roberta"}


@dataclass(frozen=True)
class ModelInfo:
    """What a page needs to know about a model's shape, without touching torch."""

    model_id: str
    arch: str
    is_causal: bool
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    vocab_size: int
    device: str
    dtype: str
    n_params: int
    nbytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LoadedModel:
    """A loaded HF model with its tokenizer; ``lock`` serialises forward passes on its device."""

    info: ModelInfo
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    lock: threading.RLock = field(default_factory=threading.RLock)
    forward_count: int = 0
    loaded_at: float = field(default_factory=time.time)
    decoder: TokenDecoder = field(init=False)

    def __post_init__(self) -> None:
        self.decoder = TokenDecoder(self.tokenizer)

    @property
    def model_id(self) -> str:
        return self.info.model_id

    def decode(self, token_ids: Sequence[int]) -> list[str]:
        """Each token's own text (byte tokens as ``<0xE2>``), one string per id: the one decoder of every page."""
        return self.decoder.decode(token_ids)


def resolve_device(preference: str = "auto") -> torch.device:
    """cuda > mps > cpu, unless a device is configured."""
    if preference and preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """bf16 (or fp16) on accelerators, fp32 on CPU, unless configured."""
    if preference and preference != "auto":
        try:
            return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[preference]
        except KeyError as exc:
            raise GlassboxError(f"Unknown dtype '{preference}': use auto, float32, float16 or bfloat16.") from exc
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def _config_dims(config: Any) -> dict[str, int]:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    d_model = getattr(cfg, "hidden_size", None) or cfg.n_embd
    n_heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    n_layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    d_head = getattr(cfg, "head_dim", None) or d_model // n_heads
    d_mlp = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d_model
    return {
        "n_layers": int(n_layers),
        "n_heads": int(n_heads),
        "n_kv_heads": int(getattr(cfg, "num_key_value_heads", None) or n_heads),
        "d_model": int(d_model),
        "d_head": int(d_head),
        "d_mlp": int(d_mlp),
        "vocab_size": int(cfg.vocab_size),
    }


def load_model(model_id: str, settings: Settings, job: Job | None = None) -> LoadedModel:
    """Load model + tokenizer; every failure becomes a :class:`ModelLoadError` naming the model."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    if not model_id or not model_id.strip():
        raise ModelLoadError("No model given: pick one of the configured models.")
    source: str | Path = model_id
    local = embedded_dir(model_id, settings.cache_dir, job)
    if local is not None:
        source = local
    elif model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().is_dir():
        # Model folders come from MODELS in config.py (the admin's list); with ALLOWED_ROOTS set they are held
        # to them like every other server path.
        from analysis.paths import user_path

        path = user_path(settings, model_id, "model folder") if settings.roots else Path(model_id).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"Model directory '{model_id}' has no config.json: not a Hugging Face model folder.")
        source = path
    device = resolve_device(settings.device)
    dtype = resolve_dtype(device, settings.dtype)
    common: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code, "token": settings.hf_token}
    if job is not None:
        job.phase(f"loading {model_id} ({str(dtype).replace('torch.', '')} on {device})")
    try:
        config = AutoConfig.from_pretrained(source, **common)
        is_causal = config.model_type not in ENCODER_TYPES
        model_cls = AutoModelForCausalLM if is_causal else AutoModel
        kwargs: dict[str, Any] = dict(common, dtype=dtype, attn_implementation=settings.attn_implementation)
        if settings.device_map:
            kwargs["device_map"] = settings.device_map
        model = model_cls.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Could not load model '{model_id}': {detail[:300]}") from exc
    if not settings.device_map:
        model = model.to(device)
    return wrap_model(model_id, model, tokenizer)


def wrap_model(model_id: str, model: Any, tokenizer: Any) -> LoadedModel:
    """A :class:`LoadedModel` around an already built HF model (eval mode, no grads)."""
    model.eval()
    model.requires_grad_(False)
    config = model.config
    param = next(model.parameters())
    n_params = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    info = ModelInfo(
        model_id=model_id,
        arch=config.model_type,
        is_causal=config.model_type not in ENCODER_TYPES,
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
        n_params=int(n_params),
        nbytes=int(nbytes),
        **_config_dims(config),
    )
    return LoadedModel(info=info, model=model, tokenizer=tokenizer, device=param.device, dtype=param.dtype)


class ModelRegistry:
    """Loads each model once (a lock per id), evicts least-recently-used ones over the budget."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.load_count: dict[str, int] = {}
        self.on_evict: list[Callable[[str], None]] = []  # called with the model id after it left the registry

    def _lock_for(self, model_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(model_id, threading.Lock())

    def allowed(self, model_id: str) -> bool:
        return model_id in self.settings.models

    def get(self, model_id: str, job: Job | None = None) -> LoadedModel:
        """The loaded model; concurrent callers for the same id wait for one load (``job`` reports it)."""
        with self._guard:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
        with self._lock_for(model_id):
            with self._guard:
                if model_id in self._models:
                    return self._models[model_id]
            loaded = load_model(model_id, self.settings, job)
            with self._guard:
                self.load_count[model_id] = self.load_count.get(model_id, 0) + 1
                self._models[model_id] = loaded
                evicted = self._evict(keep=model_id)
            self._notify(evicted)
            return loaded

    def _evict(self, keep: str) -> list[str]:
        """Drop least-recently-used models over the count or memory budget (call with the guard held)."""

        def total() -> int:
            return sum(m.info.nbytes for m in self._models.values())

        evicted = []
        while len(self._models) > 1 and (
            len(self._models) > self.settings.max_models or total() > self.settings.model_memory_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            self._models.pop(oldest)
            evicted.append(oldest)
        return evicted

    def _notify(self, evicted: list[str]) -> None:
        for model_id in evicted:
            for callback in list(self.on_evict):
                callback(model_id)

    def register(self, loaded: LoadedModel) -> LoadedModel:
        """Add an already loaded model (tests, or models built in code)."""
        with self._guard:
            self._models[loaded.model_id] = loaded
            if loaded.model_id not in self.settings.models:
                self.settings.models.append(loaded.model_id)
        return loaded

    def loaded(self) -> list[ModelInfo]:
        with self._guard:
            return [m.info for m in self._models.values()]

    def is_loaded(self, model_id: str) -> bool:
        with self._guard:
            return model_id in self._models

    def unload(self, model_id: str) -> None:
        """Evict one model now (its caches go with it through ``on_evict``)."""
        with self._guard:
            gone = self._models.pop(model_id, None)
        if gone is not None:
            self._notify([model_id])
