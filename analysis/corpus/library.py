"""The sample library: every text Glassbox analyses, trains lenses/SAEs on and labels.

Samples come from the offline sources of :mod:`analysis.corpus.sources` (built lazily, once per
source), texts typed in the UI (``user``) and rows of Hugging Face datasets (``hf``, online or cached).
No Dash, no torch: pandas/datasets are imported lazily.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.corpus.sources import (
    DEFAULT_LABELS,
    DEFAULT_PROSE_TOPICS,
    DEFAULT_TRAINING_SOURCES,
    DEFAULT_WORD_RANGE,
    DYNAMIC_SOURCES,
    SOURCES,
    STATIC_SOURCES,
    Sample,
    build_code,
    build_files,
    build_fortunes,
    build_jargon,
    build_prose,
    build_scripture,
)
from analysis.corpus.text import chunk_texts, snippet, truncate
from analysis.errors import InputError
from analysis.hub import offline_by_env

if TYPE_CHECKING:  # pragma: no cover
    import pandas

_MIN_MAX_CHARS = 100
USER_SAMPLE = "user"  # the sample id of "your own text" in every picker (components.pickers uses the same)


class SampleNotFound(KeyError):
    """No sample has this id."""

    def __init__(self, sample_id: str) -> None:
        super().__init__(sample_id)
        self.sample_id = sample_id

    def __str__(self) -> str:
        return f"no sample with id {self.sample_id!r}"


class CorpusError(InputError, ValueError):
    """Bad input text, file, dataset or argument, or the hub is unreachable."""


class SampleLibrary:
    """All samples available offline (plus user and HF texts), built lazily per source."""

    def __init__(self, samples_dir: str | Path | None = None, max_chars: int = 20_000) -> None:
        if not isinstance(max_chars, int) or max_chars < _MIN_MAX_CHARS:
            raise CorpusError(f"max_chars must be an integer >= {_MIN_MAX_CHARS}, got {max_chars!r}")
        self.max_chars = max_chars
        self.samples_dir: Path | None = None
        if samples_dir is not None:
            path = Path(samples_dir).expanduser()
            if not path.is_dir():
                raise CorpusError(f"samples directory {str(path)!r} does not exist or is not a directory")
            self.samples_dir = path
        self.warnings: list[str] = []
        self._lock = threading.RLock()
        self._static: dict[str, list[Sample]] = {}
        self._index: dict[str, Sample] = {}
        self._dynamic: dict[str, dict[str, Sample]] = {name: {} for name in DYNAMIC_SOURCES}
        self._chunk_cache: dict[tuple[str, int, int], list[str]] = {}
        self._default_id: str | None = None
        self._builders: dict[str, Callable[[], list[Sample]]] = {
            "prose": functools.partial(build_prose, max_chars, self.warnings),
            "code": functools.partial(build_code, max_chars, self.warnings),
            "scripture": functools.partial(build_scripture, max_chars, self.warnings),
            "jargon": functools.partial(build_jargon, max_chars, self.warnings),
            "fortunes": functools.partial(build_fortunes, max_chars, self.warnings),
            "files": functools.partial(build_files, self.samples_dir, max_chars, self.warnings),
        }

    # -- public API --------------------------------------------------------------------------

    def sources(self) -> dict[str, list[Sample]]:
        """Samples grouped by source, only sources with at least one sample on this machine."""
        with self._lock:
            out = {name: list(self._source(name)) for name in STATIC_SOURCES}
            for name in DYNAMIC_SOURCES:
                out[name] = list(self._dynamic[name].values())
        return {name: samples for name, samples in out.items() if samples}

    def list(self, source: str | None = None) -> list[Sample]:
        """All samples (in source order), or those of one source ([] when it is absent here)."""
        if source is None:
            return [s for samples in self.sources().values() for s in samples]
        self._check_source_name(source)
        with self._lock:
            if source in DYNAMIC_SOURCES:
                return list(self._dynamic[source].values())
            return list(self._source(source))

    def get(self, sample_id: str) -> Sample:
        """The sample with this id; raises :class:`SampleNotFound`."""
        source = sample_id.split("/", 1)[0] if isinstance(sample_id, str) else ""
        with self._lock:
            if source in DYNAMIC_SOURCES:
                found = self._dynamic[source].get(sample_id)
            elif source in STATIC_SOURCES:
                self._source(source)
                found = self._index.get(sample_id)
            else:
                found = None
        if found is None:
            raise SampleNotFound(sample_id)
        return found

    def default_sample_id(self) -> str:
        """Id of a readable English prose sample of 150-400 words."""
        with self._lock:
            if self._default_id is None:
                self._default_id = self._pick_default()
            return self._default_id

    def add_user_text(self, text: str) -> Sample:
        """Register a user text (kept in memory) under ``user/<sha1[:12]>``."""
        if not isinstance(text, str):
            raise CorpusError(f"user text must be a string, got {type(text).__name__}")
        text = text.replace("\r\n", "\n")
        if not text.strip():
            raise CorpusError("user text is empty (nothing but whitespace); type or paste some text")
        if len(text) > self.max_chars:
            raise CorpusError(
                f"user text has {len(text):,} characters, more than the limit of "
                f"max_chars={self.max_chars:,}; shorten it"
            )
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        sample = Sample(f"user/{digest}", "user", f"Your text: {snippet(text, 36)}", text)
        with self._lock:
            self._dynamic["user"][sample.sample_id] = sample
        return sample

    def load_hf(
        self,
        name: str,
        split: str = "train",
        text_column: str = "text",
        n: int = 50,
        config: str | None = None,
    ) -> list[Sample]:
        """First ``n`` non-empty texts of a Hugging Face dataset as ``hf/<name>#<row>`` samples.

        Streams when online (no full download); in offline mode only cached datasets load.
        ``config`` is the dataset configuration (e.g. ``"wikitext-2-raw-v1"``); a non-default
        config or split is part of the id: ``hf/<name>:<config>@<split>#<row>``.
        """
        if not isinstance(name, str) or not name.strip():
            raise CorpusError("dataset name is empty")
        if not isinstance(n, int) or n < 1:
            raise CorpusError(f"n must be a positive integer, got {n!r}")
        try:
            import datasets  # heavy optional dependency: imported lazily
        except ImportError as exc:
            raise CorpusError("the 'datasets' package is not installed (pip install datasets)") from exc
        name = name.strip()
        offline = offline_by_env()
        where = f"Hugging Face dataset {name!r}" + (f" (config {config!r})" if config else "") + f", split {split!r}"
        hint = (
            "; offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE), so only datasets already in "
            "the local cache can be loaded"
            if offline
            else "; check the name, config and split, and the network connection"
        )
        label = name + (f":{config}" if config else "") + (f"@{split}" if split != "train" else "")
        samples: list[Sample] = []
        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=not offline)
            scan_limit = max(1000, 50 * n)
            for row_idx, row in enumerate(ds):
                if row_idx == 0 and text_column not in row:
                    cols = ", ".join(map(repr, row)) or "none"
                    raise CorpusError(f"{where} has no column {text_column!r} (columns: {cols})")
                if row_idx >= scan_limit:
                    break
                value = row.get(text_column)
                if isinstance(value, str) and value.strip():
                    text = truncate(value, self.max_chars)
                    sample_id = f"hf/{label}#{row_idx}"
                    samples.append(Sample(sample_id, "hf", f"{label} #{row_idx}: {snippet(text, 32)}", text))
                    if len(samples) >= n:
                        break
        except CorpusError:
            raise
        except Exception as exc:  # datasets/hub raise many unrelated types; report them uniformly
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise CorpusError(f"could not load {where}: {type(exc).__name__}: {first}{hint}") from exc
        if not samples:
            raise CorpusError(f"{where} has no non-empty text in column {text_column!r}")
        with self._lock:
            for s in samples:
                self._dynamic["hf"][s.sample_id] = s
        return samples

    def text_chunks(self, source: str, n: int, min_chars: int = 200, max_chars: int = 1200, seed: int = 0) -> list[str]:
        """Up to ``n`` distinct texts of ``source``, ``min_chars``..``max_chars`` long, cut at
        paragraph/line boundaries (short pieces join the next text), in a seeded order.

        Fewer than ``n`` are returned when the source does not have enough text.
        """
        if not isinstance(n, int) or n < 0:
            raise CorpusError(f"n must be a non-negative integer, got {n!r}")
        if min_chars < 1 or max_chars < min_chars:
            raise CorpusError(f"need 1 <= min_chars <= max_chars, got min_chars={min_chars}, max_chars={max_chars}")
        samples = self._require_source(source)
        key = (source, min_chars, max_chars)
        with self._lock:
            chunks = self._chunk_cache.get(key) if source in STATIC_SOURCES else None
            if chunks is None:
                chunks = chunk_texts((s.text for s in samples), min_chars, max_chars)
                if source in STATIC_SOURCES:
                    self._chunk_cache[key] = chunks
        order = list(range(len(chunks)))
        random.Random(f"{seed}:{source}").shuffle(order)
        return [chunks[i] for i in order[:n]]

    def labeled_dataset(
        self,
        labels: Sequence[str] = DEFAULT_LABELS,
        n_per_label: int = 300,
        min_chars: int = 200,
        max_chars: int = 1200,
        seed: int = 0,
    ) -> pandas.DataFrame:
        """A shuffled, balanced DataFrame with columns ``text`` and ``label`` (= source name).

        Explicitly requested labels must exist (else :class:`CorpusError`); with the default
        labels, sources missing on this machine (e.g. scripture) are dropped with a warning.
        Every label gets the same number of rows: ``n_per_label``, or fewer if a source is short.
        """
        import pandas as pd  # lazy: keeps importing this module light

        wanted = list(dict.fromkeys(labels))
        if not wanted:
            raise CorpusError("labels is empty")
        available = self.sources()
        missing = [lab for lab in wanted if lab not in available]
        if missing:
            if labels is not DEFAULT_LABELS:
                raise CorpusError(
                    f"label source(s) {missing} not available on this machine (available: {sorted(available)})"
                )
            self.warnings.append(f"labeled_dataset: skipping unavailable default label(s) {missing}")
            wanted = [lab for lab in wanted if lab in available]
            if len(wanted) < 2:
                raise CorpusError(f"need at least two available labels, have {wanted}")
        per_label = {lab: self.text_chunks(lab, n_per_label, min_chars, max_chars, seed) for lab in wanted}
        n_each = min(len(v) for v in per_label.values())
        if n_each == 0:
            empty = [lab for lab, v in per_label.items() if not v]
            raise CorpusError(f"no chunks of {min_chars}-{max_chars} characters for label(s) {empty}")
        if n_each < n_per_label:
            self.warnings.append(f"labeled_dataset: only {n_each} texts per label (asked for {n_per_label})")
        rows = [(text, lab) for lab in wanted for text in per_label[lab][:n_each]]
        random.Random(seed).shuffle(rows)
        return pd.DataFrame(rows, columns=["text", "label"])

    def training_text(
        self,
        max_chars: int,
        sources: Sequence[str] = DEFAULT_TRAINING_SOURCES,
        doc_chars: int = 2000,
    ) -> list[str]:
        """Documents (<= ``doc_chars`` each, interleaved across ``sources``) totalling at most
        ``max_chars`` characters, for lens/SAE training. Deterministic; absent sources skipped."""
        if not isinstance(max_chars, int) or max_chars < 1:
            raise CorpusError(f"max_chars must be a positive integer, got {max_chars!r}")
        if doc_chars < 100:
            raise CorpusError(f"doc_chars must be >= 100, got {doc_chars}")
        for src in sources:
            self._check_source_name(src)
        available = self.sources()
        names = [s for s in dict.fromkeys(sources) if s in available]
        if not names:
            raise CorpusError(f"none of the sources {list(sources)} is available (available: {sorted(available)})")
        streams = [self.text_chunks(s, 10**9, min(200, doc_chars), doc_chars, seed=0) for s in names]
        docs: list[str] = []
        total = 0
        for i in range(max(len(s) for s in streams)):
            for stream in streams:
                if i >= len(stream):
                    continue
                doc = stream[i]
                room = max_chars - total
                if len(doc) > room:
                    if room >= 50:
                        docs.append(truncate(doc, room))
                    return docs
                docs.append(doc)
                total += len(doc)
        return docs

    # -- internals ---------------------------------------------------------------------------

    def _check_source_name(self, source: str) -> None:
        if source not in SOURCES:
            raise CorpusError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")

    def _require_source(self, source: str) -> list[Sample]:
        self._check_source_name(source)
        samples = self.list(source)
        if not samples:
            raise CorpusError(
                f"source {source!r} is not available on this machine (available: {sorted(self.sources())})"
            )
        return samples

    def _source(self, name: str) -> list[Sample]:
        """Samples of a static source, built on first use (call with the lock held)."""
        samples = self._static.get(name)
        if samples is None:
            samples = []
            for s in self._builders[name]():
                if s.sample_id in self._index:
                    self.warnings.append(f"duplicate sample id {s.sample_id!r} skipped")
                    continue
                self._index[s.sample_id] = s
                samples.append(s)
            self._static[name] = samples
        return samples

    def _pick_default(self) -> str:
        prose = self._source("prose")
        lo, hi = DEFAULT_WORD_RANGE
        by_id = {s.sample_id: s for s in prose}
        preferred = [by_id[f"prose/{t}"] for t in DEFAULT_PROSE_TOPICS if f"prose/{t}" in by_id]
        for s in preferred + prose:
            if lo <= len(s.text.split()) <= hi:
                return s.sample_id
        everything = self.list()
        if prose or everything:
            return (prose or everything)[0].sample_id
        raise CorpusError("no samples are available at all")
