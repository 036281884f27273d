"""The process-wide services every page shares: settings, model registry, run cache, memos, disk store, jobs.

Every analysis entry point takes the runtime as its first argument. In-memory caches are
:class:`~analysis.cache.MemoLRU` objects made by :meth:`Runtime.memo`: bounded, keyed ``(model_id, ...)``,
listed by :meth:`Runtime.cache_stats` (Home, ``/healthz``) and dropped with their model when the registry
evicts it, so an evicted model's weights and products become unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from analysis.cache import DiskStore, MemoLRU, RunCache, content_key
from analysis.capture import Run, run_text
from analysis.corpus import SampleLibrary
from analysis.errors import ModelLoadError
from analysis.jobs import JobRegistry
from analysis.models import LoadedModel, ModelRegistry
from analysis.params import parse_text
from analysis.settings import Settings, load_settings


class Runtime:
    """Shared by all callbacks and the API; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self.runs = RunCache(settings.run_cache_bytes)
        self.disk = DiskStore(settings.cache_path / "products", settings.disk_cache_bytes)
        self.samples = SampleLibrary(settings.samples_dir, max_chars=settings.max_text_chars)
        self.jobs = JobRegistry()
        self._memos: dict[str, MemoLRU] = {}
        self._run_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.registry.on_evict.append(self.forget_model)

    # ---- caches ---------------------------------------------------------------------------------
    def memo(self, name: str, limit: int = 32) -> MemoLRU:
        """The runtime's memo called ``name`` (created on first use); keys must start with the model id."""
        with self._guard:
            memo = self._memos.get(name)
            if memo is None:
                memo = self._memos[name] = MemoLRU(limit, name)
            return memo

    def forget_model(self, model_id: str) -> None:
        """Drop every run and memo entry of ``model_id`` (called when the registry evicts it)."""
        self.runs.drop_model(model_id)
        with self._guard:
            memos = list(self._memos.values())
        for memo in memos:
            memo.drop_model(model_id)
        with self._guard:
            for key in [k for k in self._run_locks if k.startswith(f"{model_id}\x00")]:
                self._run_locks.pop(key, None)

    def cache_stats(self) -> list[dict[str, Any]]:
        """Every in-memory cache with its entries and bytes (the run cache first)."""
        with self._guard:
            memos = sorted(self._memos.values(), key=lambda m: m.name)
        return [self.runs.stats()] + [m.stats() for m in memos]

    def status(self) -> dict[str, Any]:
        """Device, memory, loaded models, every cache and every job: what Home and ``/healthz`` show."""
        import psutil
        import torch

        from analysis.models import resolve_device

        device = resolve_device(self.settings.device)
        accelerator = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        return {
            "device": str(device),
            "rss_bytes": psutil.Process().memory_info().rss,
            "accelerator_bytes": accelerator,
            "loaded": [info.as_dict() for info in self.registry.loaded()],
            "run_cache_bytes": self.runs.total_bytes(),
            "caches": self.cache_stats(),
            "jobs": [s.as_dict() for s in self.jobs.statuses()],
        }

    # ---- models and texts -----------------------------------------------------------------------
    def model(self, model_id: str, job: Any = None) -> LoadedModel:
        """A configured model (loaded once); unknown ids give a clear error."""
        if not self.registry.allowed(model_id):
            raise ModelLoadError(
                f"Model '{model_id}' is not in this dashboard's model list "
                f"({', '.join(self.settings.models)}); add it to MODELS in config.py."
            )
        return self.registry.get(model_id, job)

    def start_loading(self, model_id: str | None) -> str | None:
        """Load ``model_id`` in the background (a job with its progress, shown under the navbar) unless it is
        loaded; returns the job key, or None when there is nothing to wait for."""
        if not model_id or not self.registry.allowed(model_id) or self.registry.is_loaded(model_id):
            return None
        key = f"model:{model_id}"
        self.jobs.start(key, f"Loading {model_id}", lambda job: self.model(model_id, job).info.model_id)
        return key

    def tokens(self, model_id: str, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` for ``model_id`` (tokenized lazily once, cached)."""
        memo = self.memo("tokenized", 4096)
        return memo.get_or_compute(
            (model_id, content_key(text)),
            lambda: tuple(self.model(model_id).tokenizer(text, add_special_tokens=True)["input_ids"]),
        )

    def check_text(self, text: str | None, field: str | None = None) -> str:
        """A non-empty text within the character limit (the bound named in the error)."""
        if text is not None and not str(text).strip():
            text = None
        if text is None:
            from analysis.errors import InputError

            raise InputError("The text is empty: type or pick a sample.", field=field)
        return parse_text(text, "The text", self.settings.max_text_chars, field=field)

    def text(self, sample_id: str | None, user_text: str | None = None, field: str | None = None) -> str:
        """The text of a library sample, or the user's own text (sample ``"user"`` or none)."""
        from analysis.corpus import USER_SAMPLE, SampleNotFound
        from analysis.errors import InputError

        if sample_id == USER_SAMPLE or not sample_id:
            return self.check_text(user_text, field=field)
        try:
            return self.samples.get(sample_id).text
        except SampleNotFound as exc:
            raise InputError(f"Unknown sample '{sample_id}': pick one from the list.") from exc

    def sample_title(self, sample_id: str | None) -> str:
        from analysis.corpus import USER_SAMPLE

        return "Your text" if sample_id in (None, "", USER_SAMPLE) else self.samples.get(sample_id).title

    def run(self, model_id: str, text: str | None, sites: Iterable[str] | str = (), edits: Sequence[Any] = ()) -> Run:
        """The run of ``text`` with at least ``sites`` captured, from cache when possible.

        A miss re-runs with the union of the cached and requested sites, so switching between
        views of one text runs the model at most once per new site family. ``edits`` (resolved
        :mod:`analysis.edits` records) give the edited run, cached beside the clean one under
        (text, :func:`~analysis.edits.edits_key`): one forward with the edit hooks, once.
        """
        text = self.check_text(text)
        lm = self.model(model_id)
        from analysis.sites import arch_for, available_sites

        hooks, edit_key = None, ""
        if edits:
            from analysis.edits import PatchEdit, capture_edits, edits_key

            hooks, edit_key = capture_edits(lm, edits), edits_key(edits)
            n_tokens = len(self.tokens(model_id, text))
            for edit in edits:
                beyond = [p for p in getattr(edit, "positions", ()) if p >= n_tokens] if isinstance(edit, PatchEdit) else []
                if beyond:
                    from analysis.errors import InputError

                    raise InputError(f"{edit.text}: this text has {n_tokens} tokens, so positions 0..{n_tokens - 1}; "
                                     f"got {beyond[0]}.", field="edits")
        wanted = set(available_sites(arch_for(lm.model), lm.info.n_layers)) if sites == "all" else set(sites)
        cached = self.runs.get(model_id, text, wanted, edit_key)
        if cached is not None:
            return cached
        key = f"{model_id}\x00{RunCache.key(model_id, text, edit_key)}"
        with self._guard:
            lock = self._run_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self.runs.get(model_id, text, wanted, edit_key)
            if cached is not None:
                return cached
            union = wanted | self.runs.cached_sites(model_id, text, edit_key)
            run = run_text(lm, text, sorted(union), max_tokens=self.settings.max_tokens, edits=hooks,
                           edits_key=edit_key)
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
