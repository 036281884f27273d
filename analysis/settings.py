"""Glassbox settings: defaults, overridden by an optional ``config.py`` and ``GLASSBOX_*`` env vars.

``config.py`` (copied from ``config_example.py``) is a plain module of UPPER_CASE names; each name
maps to the lower-case field of :class:`Settings`. Environment variables ``GLASSBOX_<NAME>`` win
over ``config.py``. The app runs without ``config.py`` on the defaults below.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EMBEDDED_LM = "embedded:smollm2-135m-instruct"
EMBEDDED_ENCODER = "embedded:all-minilm-l6-v2"
EMBEDDED_GEMMA = "embedded:gemma-3-270m"


def _default_cache_dir() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox")


@dataclass
class Settings:
    """Every knob of Glassbox; see ``config_example.py`` for the documented list."""

    models: list[str] = field(default_factory=lambda: [EMBEDDED_LM, EMBEDDED_GEMMA, EMBEDDED_ENCODER])
    default_model: str = EMBEDDED_LM
    device: str = "auto"  # auto | cuda | cuda:1 | mps | cpu
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    attn_implementation: str = "eager"  # eager is needed for attention patterns
    device_map: str | None = None  # "auto" spreads a big model over several GPUs (accelerate)
    cache_dir: str = field(default_factory=_default_cache_dir)
    host: str = "127.0.0.1"
    port: int = 8050
    hf_token: str | None = None
    trust_remote_code: bool = False
    allowed_roots: list[str] = field(default_factory=list)  # folders every user-given server path must be in
    local_model_roots: list[str] = field(default_factory=list)  # older name of allowed_roots (still read)
    max_tokens: int = 1024
    max_text_chars: int = 20_000
    max_dataset_rows: int = 5_000
    max_upload_bytes: int = 20 * 1024 * 1024
    run_cache_bytes: int = 2 * 1024**3
    disk_cache_bytes: int = 20 * 1024**3
    model_memory_bytes: int = 16 * 1024**3
    max_models: int = 3
    samples_dir: str | None = None
    password: str | None = None  # team mode basic-auth password (user "glassbox" unless username set)
    username: str = "glassbox"
    cors_origins: list[str] = field(default_factory=list)
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    debug: bool = False

    @property
    def team_mode(self) -> bool:
        """Serving beyond loopback or behind a password: server paths then need ``allowed_roots``."""
        return bool(self.password) or self.host not in ("127.0.0.1", "localhost", "::1")

    @property
    def roots(self) -> list[str]:
        """The allowed roots (``allowed_roots``, else the older ``local_model_roots``)."""
        return list(self.allowed_roots or self.local_model_roots)

    @property
    def cache_path(self) -> Path:
        path = Path(self.cache_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(value: str, template: Any) -> Any:
    """Turn an env-var string into the type of the field's default."""
    if isinstance(template, bool):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(template, int):
        return int(value)
    if isinstance(template, list):
        return [item.strip() for item in value.split(",") if item.strip()]
    if value.strip().lower() in {"", "none", "null"}:
        return None
    return value


def load_settings(config_path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults <- ``config.py`` (if present) <- ``GLASSBOX_*`` environment variables."""
    env = dict(os.environ if env is None else env)
    settings = Settings()
    names = {f.name for f in dataclasses.fields(Settings)}
    path = Path(config_path or env.get("GLASSBOX_CONFIG", "config.py"))
    if path.is_file():
        spec = importlib.util.spec_from_file_location("glassbox_user_config", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for key, value in vars(module).items():
            if key.isupper() and key.lower() in names:
                setattr(settings, key.lower(), value)
    for name in names:
        raw = env.get(f"GLASSBOX_{name.upper()}")
        if raw is not None:
            setattr(settings, name, _coerce(raw, getattr(Settings(), name)))
    if settings.hf_token is None:
        settings.hf_token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
    if settings.default_model not in settings.models:
        settings.models.insert(0, settings.default_model)
    return settings
