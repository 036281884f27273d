"""The process-wide services every page shares: settings, model registry, run cache, disk store."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from analysis.cache import DiskStore, RunCache, content_key
from analysis.capture import Run, run_text
from analysis.corpus import SampleLibrary
from analysis.errors import InputError, ModelLoadError
from analysis.models import LoadedModel, ModelRegistry
from analysis.settings import Settings, load_settings


class Runtime:
    """Shared by all callbacks and the API; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self.runs = RunCache(settings.run_cache_bytes)
        self.disk = DiskStore(settings.cache_path / "products", settings.disk_cache_bytes)
        self.samples = SampleLibrary(settings.samples_dir, max_chars=settings.max_text_chars)
        self._run_locks: dict[str, threading.Lock] = {}
        self._token_cache: dict[tuple[str, str], tuple[int, ...]] = {}
        self._guard = threading.Lock()

    def model(self, model_id: str) -> LoadedModel:
        """A configured model (loaded once); unknown ids give a clear error."""
        if not self.registry.allowed(model_id):
            raise ModelLoadError(
                f"Model '{model_id}' is not in this dashboard's model list "
                f"({', '.join(self.settings.models)}); add it to MODELS in config.py."
            )
        return self.registry.get(model_id)

    def tokens(self, model_id: str, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` for ``model_id`` (tokenized lazily once, cached)."""
        key = (model_id, content_key(text))
        with self._guard:
            cached = self._token_cache.get(key)
        if cached is not None:
            return cached
        ids = tuple(self.model(model_id).tokenizer(text, add_special_tokens=True)["input_ids"])
        with self._guard:
            self._token_cache[key] = ids
            while len(self._token_cache) > 4096:
                self._token_cache.pop(next(iter(self._token_cache)))
        return ids

    def check_text(self, text: str | None) -> str:
        if text is None or not text.strip():
            raise InputError("The text is empty: type or pick a sample.")
        if len(text) > self.settings.max_text_chars:
            raise InputError(
                f"The text has {len(text):,} characters; the limit is {self.settings.max_text_chars:,} "
                "(max_text_chars in config.py)."
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"The text has an invalid character at position {exc.start} (a lone UTF-16 surrogate); "
                "remove it and try again."
            ) from exc
        return text

    def run(self, model_id: str, text: str | None, sites: Iterable[str] | str = ()) -> Run:
        """The run of ``text`` with at least ``sites`` captured, from cache when possible.

        A miss re-runs with the union of the cached and requested sites, so switching between
        views of one text runs the model at most once per new site family.
        """
        text = self.check_text(text)
        lm = self.model(model_id)
        from analysis.sites import arch_for, available_sites

        wanted = set(available_sites(arch_for(lm.model), lm.info.n_layers)) if sites == "all" else set(sites)
        cached = self.runs.get(model_id, text, wanted)
        if cached is not None:
            return cached
        key = RunCache.key(model_id, text)
        with self._guard:
            lock = self._run_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self.runs.get(model_id, text, wanted)
            if cached is not None:
                return cached
            union = wanted | self.runs.cached_sites(model_id, text)
            run = run_text(lm, text, sorted(union), max_tokens=self.settings.max_tokens)
            self.runs.put(run)
            return run


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, created from ``load_settings()`` on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def set_runtime(runtime: Runtime) -> Runtime:
    """Install a runtime (the app factory and tests do this)."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime
    return runtime
