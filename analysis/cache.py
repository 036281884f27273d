"""Caches: runs in memory (LRU bounded in bytes), expensive products on disk (diskcache).

Keys are content hashes, so a restart finds the disk products again and the same text under two
sample ids is one entry.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from analysis.capture import Run

T = TypeVar("T")


def content_key(*parts: Any) -> str:
    """A stable sha256 of JSON-able parts (strings, numbers, lists, dicts)."""
    # surrogatepass: a lone surrogate (valid in JSON escapes) must not crash hashing
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


class MemoLRU:
    """A small thread-safe LRU of derived values; ``compute`` runs outside the lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Any, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.limit:
                self._values.popitem(last=False)
        return value


class RunCache:
    """LRU of :class:`Run` objects bounded by their tensor bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, text: str) -> str:
        return content_key("run", model_id, text)

    def get(self, model_id: str, text: str, sites: Iterable[str]) -> Run | None:
        """A cached run of this text whose captured sites include ``sites``."""
        wanted = set(sites)
        key = self.key(model_id, text)
        with self._lock:
            run = self._runs.get(key)
            if run is not None and wanted <= run.sites:
                self._runs.move_to_end(key)
                self.hits += 1
                return run
            self.misses += 1
            return None

    def cached_sites(self, model_id: str, text: str) -> frozenset[str]:
        with self._lock:
            run = self._runs.get(self.key(model_id, text))
            return run.sites if run is not None else frozenset()

    def put(self, run: Run) -> None:
        key = self.key(run.model_id, run.text)
        with self._lock:
            self._runs[key] = run
            self._runs.move_to_end(key)
            while len(self._runs) > 1 and self.total_bytes() > self.max_bytes:
                self._runs.popitem(last=False)

    def total_bytes(self) -> int:
        return sum(run.nbytes for run in self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


class DiskStore:
    """Expensive products (lens statistics, NRAG reductions, indexes) on disk, keyed by content."""

    def __init__(self, directory: str | Path, size_limit: int) -> None:
        self.directory = Path(directory)
        self.cache = diskcache.Cache(str(self.directory), size_limit=size_limit)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        """The stored value for ``key``, computing (once, even under concurrency) when absent."""
        sentinel = object()
        value = self.cache.get(key, default=sentinel)
        if value is not sentinel:
            return value  # type: ignore[return-value]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            value = self.cache.get(key, default=sentinel)
            if value is sentinel:
                value = compute()
                self.cache.set(key, value)
        return value  # type: ignore[return-value]

    def __contains__(self, key: str) -> bool:
        return key in self.cache

    def get(self, key: str, default: Any = None) -> Any:
        return self.cache.get(key, default=default)

    def set(self, key: str, value: Any) -> None:
        self.cache.set(key, value)
