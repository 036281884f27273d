"""Caches: runs in memory (LRU bounded in bytes), derived values in bounded memos, expensive products on
disk (diskcache).

The one in-memory cache primitive is :class:`MemoLRU`; every memo of every page is created through
``Runtime.memo(name, limit)``, keyed ``(model_id, ...)``, listed on Home and ``/healthz``, and dropped when
the model registry evicts that model. Disk keys are content hashes, so a restart finds the products again
and the same text under two sample ids is one entry.
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


def approx_nbytes(value: Any, _depth: int = 0, _seen: set[int] | None = None) -> int:
    """Bytes a cached value holds in tensors and arrays (containers and dataclasses walked, shared
    buffers counted once); strings and numbers count their length, other objects nothing."""
    seen = set() if _seen is None else _seen
    if id(value) in seen or _depth > 6:
        return 0
    seen.add(id(value))
    if hasattr(value, "untyped_storage") and hasattr(value, "element_size"):  # torch.Tensor
        storage = value.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return int(storage.nbytes())
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):  # numpy arrays, Runs
        return nbytes
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(approx_nbytes(v, _depth + 1, seen) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(approx_nbytes(v, _depth + 1, seen) for v in value)
    if hasattr(value, "parameters") and callable(value.parameters):  # nn.Module
        return sum(approx_nbytes(p, _depth + 1, seen) for p in value.parameters())
    fields = getattr(value, "__dataclass_fields__", None) or getattr(value, "__dict__", None)
    if fields:
        return sum(approx_nbytes(getattr(value, name, None), _depth + 1, seen) for name in fields)
    return 0


class MemoLRU:
    """A small thread-safe LRU of derived values; ``compute`` runs outside the lock.

    Keys of memos registered on the runtime start with the model id (``(model_id, ...)``), so
    :meth:`drop_model` forgets everything derived from a model when the registry evicts it.
    """

    def __init__(self, limit: int, name: str = "") -> None:
        self.limit = limit
        self.name = name
        self._values: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Any, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.limit:
                self._values.popitem(last=False)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.limit:
                self._values.popitem(last=False)

    def drop(self, predicate: Callable[[Any], bool]) -> int:
        """Forget every entry whose key satisfies ``predicate``; returns how many."""
        with self._lock:
            gone = [k for k in self._values if predicate(k)]
            for key in gone:
                del self._values[key]
        return len(gone)

    def drop_model(self, model_id: str) -> int:
        return self.drop(lambda key: isinstance(key, tuple) and bool(key) and key[0] == model_id)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def nbytes(self) -> int:
        with self._lock:
            values = list(self._values.values())
        seen: set[int] = set()
        return sum(approx_nbytes(v, 0, seen) for v in values)

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "entries": len(self), "limit": self.limit, "bytes": self.nbytes(),
                "hits": self.hits, "misses": self.misses}


class RunCache:
    """LRU of :class:`Run` objects bounded by their tensor bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, text: str, edits: str = "") -> str:
        """Runs are keyed by (model, text, edit list): an edited run never stands in for the clean one."""
        return content_key("run", model_id, text, edits) if edits else content_key("run", model_id, text)

    def get(self, model_id: str, text: str, sites: Iterable[str], edits: str = "") -> Run | None:
        """A cached run of this text (with these edits) whose captured sites include ``sites``."""
        wanted = set(sites)
        key = self.key(model_id, text, edits)
        with self._lock:
            run = self._runs.get(key)
            if run is not None and wanted <= run.sites:
                self._runs.move_to_end(key)
                self.hits += 1
                return run
            self.misses += 1
            return None

    def cached_sites(self, model_id: str, text: str, edits: str = "") -> frozenset[str]:
        with self._lock:
            run = self._runs.get(self.key(model_id, text, edits))
            return run.sites if run is not None else frozenset()

    def put(self, run: Run) -> None:
        key = self.key(run.model_id, run.text, run.edits)
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

    def drop_model(self, model_id: str) -> int:
        """Forget every run of ``model_id`` (its model was evicted)."""
        with self._lock:
            gone = [k for k, run in self._runs.items() if run.model_id == model_id]
            for key in gone:
                del self._runs[key]
        return len(gone)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"name": "runs", "entries": len(self._runs), "limit": self.max_bytes, "bytes": self.total_bytes(),
                    "hits": self.hits, "misses": self.misses}


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
