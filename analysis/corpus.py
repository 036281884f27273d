"""Offline sample library: the texts Glassbox analyses, trains lenses/SAEs on and labels.

Sources, each present only when it exists on this machine:

- ``prose``: CPython's ``pydoc_data.topics`` (English reference prose), always present.
- ``code``: a fixed list of standard-library modules, chunked at top-level def/class boundaries.
- ``scripture``: King James Bible chapters via the Debian ``bible`` command (bible-kjv).
- ``jargon``: the Jargon File (Debian ``jargon-text``), one sample per entry.
- ``fortunes``: a few ``fortune`` files (Debian ``fortunes``).
- ``files``: ``.txt``/``.jsonl`` files in a user-supplied samples directory.
- ``user``: texts typed into the UI (:meth:`SampleLibrary.add_user_text`).
- ``hf``: rows of a Hugging Face dataset (:meth:`SampleLibrary.load_hf`), needs the network or cache.

No Dash, no torch: this module is pure Python (pandas/datasets are imported lazily).
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sysconfig
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = [
    "CODE_MODULES",
    "DEFAULT_LABELS",
    "DEFAULT_TRAINING_SOURCES",
    "SOURCES",
    "CorpusError",
    "Sample",
    "SampleLibrary",
    "SampleNotFound",
]

SOURCES: tuple[str, ...] = ("prose", "code", "scripture", "jargon", "fortunes", "files", "user", "hf")
STATIC_SOURCES: tuple[str, ...] = SOURCES[:6]
DYNAMIC_SOURCES: tuple[str, ...] = SOURCES[6:]
DEFAULT_LABELS: tuple[str, ...] = ("prose", "code", "scripture")
DEFAULT_TRAINING_SOURCES: tuple[str, ...] = ("prose", "code", "scripture", "jargon")

#: Preferred default samples (pydoc topics), first one with 150-400 words wins.
DEFAULT_PROSE_TOPICS: tuple[str, ...] = ("exceptions", "context-managers", "for", "assert", "truth")
DEFAULT_WORD_RANGE: tuple[int, int] = (150, 400)

#: Maximum size of one code sample (blocks are packed up to this; never above ``max_chars``).
CODE_CHUNK_CHARS = 3000

#: Standard-library files used for the ``code`` source (relative to the stdlib dir; missing ones skipped).
CODE_MODULES: tuple[str, ...] = (
    "json/decoder.py",
    "json/encoder.py",
    "json/__init__.py",
    "textwrap.py",
    "heapq.py",
    "bisect.py",
    "functools.py",
    "collections/__init__.py",
    "contextlib.py",
    "dataclasses.py",
    "enum.py",
    "fractions.py",
    "statistics.py",
    "random.py",
    "string.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "posixpath.py",
    "pathlib.py",
    "shutil.py",
    "tempfile.py",
    "copy.py",
    "pprint.py",
    "reprlib.py",
    "abc.py",
    "operator.py",
    "types.py",
    "typing.py",
    "weakref.py",
    "queue.py",
    "sched.py",
    "calendar.py",
    "datetime.py",
    "numbers.py",
    "base64.py",
    "csv.py",
    "configparser.py",
    "argparse.py",
    "gettext.py",
    "difflib.py",
    "tokenize.py",
    "ast.py",
    "inspect.py",
    "traceback.py",
    "linecache.py",
    "logging/__init__.py",
    "threading.py",
    "subprocess.py",
    "selectors.py",
    "urllib/parse.py",
    "html/__init__.py",
    "html/parser.py",
    "zipfile.py",
    "zipfile/__init__.py",
    "gzip.py",
    "hmac.py",
    "secrets.py",
    "uuid.py",
    "ipaddress.py",
    "graphlib.py",
    "colorsys.py",
    "timeit.py",
    "getopt.py",
    "cmd.py",
)

#: (bible command abbreviation, book name as printed in chapter headers, last chapter to take).
SCRIPTURE_BOOKS: tuple[tuple[str, str, int], ...] = (
    ("gen", "Genesis", 50),
    ("exo", "Exodus", 40),
    ("ps", "Psalms", 50),
    ("pr", "Proverbs", 31),
    ("matt", "Matthew", 28),
    ("john", "John", 21),
)
BIBLE_TIMEOUT_S = 30.0

JARGON_PATH = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNE_FILES: tuple[str, ...] = ("computers", "science", "wisdom", "literature")

_MIN_MAX_CHARS = 100


@dataclass(frozen=True)
class Sample:
    """One analysable text with a stable id (``"<source>/<name>"``)."""

    sample_id: str
    source: str
    title: str
    text: str


class SampleNotFound(KeyError):
    """No sample has this id."""

    def __init__(self, sample_id: str) -> None:
        super().__init__(sample_id)
        self.sample_id = sample_id

    def __str__(self) -> str:
        return f"no sample with id {self.sample_id!r}"


class CorpusError(ValueError):
    """Bad input text, file, dataset or argument, or the hub is unreachable."""


# ---------------------------------------------------------------------------------------------
# text helpers


def _slug(name: str) -> str:
    """Lower-case id fragment made of ``[a-z0-9-]``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "entry"


def _snippet(text: str, width: int = 48) -> str:
    """First non-empty line of ``text``, shortened to ``width`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs (indentation kept, surrounding blank lines dropped)."""
    parts = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [p.strip("\n").rstrip() for p in parts if p.strip()]


def _split_lines(text: str, limit: int) -> list[str]:
    """Split ``text`` at line boundaries into pieces <= ``limit`` (overlong lines at spaces)."""
    pieces: list[str] = []
    cur = ""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            if cur:
                pieces.append(cur)
                cur = ""
            pieces.append(line[:cut])
            line = line[cut:].lstrip(" ")
        cand = f"{cur}\n{line}" if cur else line
        if len(cand) <= limit:
            cur = cand
        else:
            pieces.append(cur)
            cur = line
    if cur:
        pieces.append(cur)
    return [p.rstrip() for p in pieces if p.strip()]


def _pack(paragraphs: Iterable[str], limit: int, sep: str = "\n\n") -> list[str]:
    """Greedily join paragraphs with ``sep`` into chunks <= ``limit``; split longer ones by lines."""
    chunks: list[str] = []
    cur = ""
    for para in paragraphs:
        for piece in [para] if len(para) <= limit else _split_lines(para, limit):
            if cur and len(cur) + len(sep) + len(piece) <= limit:
                cur = cur + sep + piece
            else:
                if cur:
                    chunks.append(cur)
                cur = piece
    if cur:
        chunks.append(cur)
    return chunks


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to <= ``limit`` characters, preferably at a paragraph, line or word boundary."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    for sep in ("\n\n", "\n", " "):
        cut = head.rfind(sep)
        if cut >= limit // 2:
            return head[:cut].rstrip()
    return text[:limit].rstrip() or text[:limit]


def _read_text(path: Path) -> str:
    """File contents as UTF-8, falling back to Latin-1."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _chunk_texts(texts: Iterable[str], min_chars: int, max_chars: int) -> list[str]:
    """Chunks in [min_chars, max_chars] at paragraph/line boundaries; short tails join the next text."""
    out: list[str] = []
    seen: set[str] = set()
    carry = ""
    for text in texts:
        for piece in _pack(_paragraphs(text), max_chars):
            if carry:
                joined = f"{carry}\n\n{piece}"
                if len(joined) <= max_chars:
                    piece = joined
                carry = ""
            if len(piece) >= min_chars:
                if piece not in seen:
                    seen.add(piece)
                    out.append(piece)
            else:
                carry = piece
    return out


# ---------------------------------------------------------------------------------------------
# source parsers (pure functions, unit-testable)


@functools.lru_cache(maxsize=256)
def _file_code_blocks(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """:func:`_code_blocks` of a file, cached per process (parsing the stdlib takes ~0.5 s)."""
    return tuple((text, tuple(names)) for text, names in _code_blocks(_read_text(Path(path))))


def _code_blocks(source: str) -> list[tuple[str, list[str]]]:
    """Split Python source at top-level def/class statements (decorators and leading comments
    stay with their definition). Returns ``(block text, defined names)`` pairs."""
    lines = source.splitlines()
    starts: list[tuple[int, str]] = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                while first > 0 and lines[first - 1].startswith("#"):
                    first -= 1
                starts.append((first, node.name))
    cuts = [0] + [s for s, _ in starts] + [len(lines)]
    names: list[list[str]] = [[]] + [[n] for _, n in starts]
    blocks: list[tuple[str, list[str]]] = []
    for (a, b), block_names in zip(itertools.pairwise(cuts), names, strict=True):
        text = "\n".join(lines[a:b]).strip("\n").rstrip()
        if text.strip():
            blocks.append((text, block_names))
    return blocks


def _chunk_code(blocks: Iterable[tuple[str, Sequence[str]]], target: int, limit: int) -> list[tuple[str, list[str]]]:
    """Pack top-level blocks into chunks of at most ``min(target, limit)`` chars; a longer
    block (a big class) is split at blank lines."""
    target = min(target, limit)
    chunks: list[tuple[str, list[str]]] = []
    cur, cur_names = "", []
    for text, names in blocks:
        parts = [text] if len(text) <= target else _pack(_paragraphs(text), target)
        for k, part in enumerate(parts):
            part_names = list(names) if k == 0 else [f"{n} (cont.)" for n in names[:1]]
            if cur and len(cur) + 3 + len(part) <= target:
                cur, cur_names = f"{cur}\n\n\n{part}", cur_names + part_names
            else:
                if cur:
                    chunks.append((cur, cur_names))
                cur, cur_names = part, list(part_names)
    if cur:
        chunks.append((cur, cur_names))
    return chunks


_VERSE_RE = re.compile(r"^\s+(\d+)\s+(.*)$")


def _parse_bible(output: str, book: str) -> list[tuple[int, list[str]]]:
    """Chapters ``(number, verses)`` from ``bible`` output (headers like ``Genesis 1``)."""
    header = re.compile(rf"^{re.escape(book)} (\d+)\s*$")
    chapters: list[tuple[int, list[str]]] = []
    seen: set[int] = set()
    verses: list[str] | None = None
    for line in output.splitlines():
        m = header.match(line)
        if m:
            num = int(m.group(1))
            verses = None if num in seen else []
            if verses is not None:
                seen.add(num)
                chapters.append((num, verses))
            continue
        if verses is None:
            continue
        v = _VERSE_RE.match(line)
        if v:
            verses.append(v.group(2).strip())
        elif line.strip() and verses:
            verses[-1] = f"{verses[-1]} {line.strip()}"  # wrapped verse continuation
    return [(n, vs) for n, vs in chapters if vs]


_JARGON_ENTRY_RE = re.compile(r"^   :([^:]+):\s*(.*)$")
_JARGON_LETTER_RE = re.compile(r"^  [A-Z0-9]\s*$")
_JARGON_PART_RE = re.compile(r"^\s+Part\s+[IVX]+\.")
_BOX_CHARS_RE = re.compile("[\u2500-\u257f]")


def _reflow(body_lines: list[str]) -> str:
    """Join hard-wrapped prose paragraphs; keep tables, art and indented blocks as they are."""
    paras = _paragraphs("\n".join(body_lines))
    out = []
    for para in paras:
        lines = para.split("\n")
        if all(ln and not ln[0].isspace() for ln in lines) and not _BOX_CHARS_RE.search(para):
            out.append(" ".join(ln.strip() for ln in lines))
        else:
            out.append(para)
    return "\n\n".join(out)


def _parse_jargon(raw: str) -> list[tuple[str, str]]:
    """``(term, text)`` per lexicon entry of the Jargon File text; front matter is skipped."""
    lines = raw.splitlines()
    try:
        start = lines.index("Glossary")
    except ValueError:
        start = 0
    entries: list[tuple[str, str]] = []
    term: str | None = None
    rest = ""
    body: list[str] = []

    def flush() -> None:
        if term is None:
            return
        head = f"{term}: {rest}" if rest else term
        text = _reflow(body)
        entries.append((term, f"{head}\n\n{text}" if text else head))

    for line in lines[start + 1 :]:
        m = _JARGON_ENTRY_RE.match(line)
        if m:
            flush()
            term = m.group(1).strip()
            rest = re.sub(r"^//,?\s*", "", m.group(2).strip())
            body = []
            continue
        if term is None:
            continue
        if _JARGON_LETTER_RE.match(line) or _JARGON_PART_RE.match(line) or (line and not line[0].isspace()):
            flush()
            term = None
            if line and not line[0].isspace():
                break  # an appendix starts: the lexicon is over
            continue
        body.append(line[3:] if line.startswith("   ") else line.lstrip())
    flush()
    return entries


def _parse_fortunes(raw: str) -> list[str]:
    """Fortunes of a ``%``-separated fortune file."""
    items = re.split(r"^%[ \t]*$", raw.replace("\r\n", "\n"), flags=re.MULTILINE)
    return [it.strip("\n").rstrip() for it in items if it.strip()]


def _hf_offline() -> bool:
    """True when the Hugging Face offline switches are set in the environment."""
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


# ---------------------------------------------------------------------------------------------
# the library


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
            "prose": self._build_prose,
            "code": self._build_code,
            "scripture": self._build_scripture,
            "jargon": self._build_jargon,
            "fortunes": self._build_fortunes,
            "files": self._build_files,
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
        sample = Sample(f"user/{digest}", "user", f"Your text: {_snippet(text, 36)}", text)
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
        offline = _hf_offline()
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
                    text = _truncate(value, self.max_chars)
                    sample_id = f"hf/{label}#{row_idx}"
                    samples.append(Sample(sample_id, "hf", f"{label} #{row_idx}: {_snippet(text, 32)}", text))
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
                chunks = _chunk_texts((s.text for s in samples), min_chars, max_chars)
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
                        docs.append(_truncate(doc, room))
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

    def _build_prose(self) -> list[Sample]:
        try:
            from pydoc_data.topics import topics
        except ImportError:
            self.warnings.append("pydoc_data.topics is missing from this Python; no prose samples")
            return []
        out = []
        for key in sorted(topics):
            text = _truncate(topics[key], self.max_chars)
            if text:
                out.append(Sample(f"prose/{key}", "prose", key, text))
        return out

    def _build_code(self) -> list[Sample]:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        target = min(CODE_CHUNK_CHARS, self.max_chars)
        out = []
        for rel in CODE_MODULES:
            path = stdlib / rel
            if not path.is_file():
                continue
            module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            try:
                stat = path.stat()
                blocks = _file_code_blocks(str(path), stat.st_mtime_ns, stat.st_size)
            except OSError as exc:
                self.warnings.append(f"cannot read {path}: {exc}")
                continue
            for i, (text, names) in enumerate(_chunk_code(blocks, target, self.max_chars)):
                if names:
                    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
                    title = f"{module}: {shown}"
                else:
                    title = f"{module} (module top)" if i == 0 else f"{module} #{i}"
                out.append(Sample(f"code/{module}#{i}", "code", title, text))
        return out

    def _build_scripture(self) -> list[Sample]:
        exe = shutil.which("bible")
        if not exe:
            return []
        out = []
        for abbr, book, last in SCRIPTURE_BOOKS:
            cmd = [exe, "-l10000", f"{abbr}1:1-{last}:999"]
            try:
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                    timeout=BIBLE_TIMEOUT_S,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                self.warnings.append(f"bible {book}: {type(exc).__name__}: {exc}")
                continue
            if proc.returncode != 0:
                self.warnings.append(f"bible {book}: exit status {proc.returncode}: {proc.stderr.strip()[:200]}")
                continue
            for chapter, verses in _parse_bible(proc.stdout, book):
                if chapter > last:
                    break
                text = _truncate("\n".join(verses), self.max_chars)
                out.append(Sample(f"scripture/{_slug(book)}-{chapter}", "scripture", f"{book} {chapter}", text))
        return out

    def _build_jargon(self) -> list[Sample]:
        if not JARGON_PATH.is_file():
            return []
        try:
            with gzip.open(JARGON_PATH, "rb") as fh:
                raw = fh.read().decode("utf-8", errors="replace")
        except (OSError, EOFError) as exc:
            self.warnings.append(f"cannot read {JARGON_PATH}: {exc}")
            return []
        out = []
        used: set[str] = set()
        for term, text in _parse_jargon(raw):
            slug = base = _slug(term)
            k = 2
            while slug in used:
                slug, k = f"{base}-{k}", k + 1
            used.add(slug)
            out.append(Sample(f"jargon/{slug}", "jargon", term, _truncate(text, self.max_chars)))
        return out

    def _build_fortunes(self) -> list[Sample]:
        out = []
        for name in FORTUNE_FILES:
            path = FORTUNES_DIR / name
            if not path.is_file():
                continue
            try:
                raw = _read_text(path)
            except OSError as exc:
                self.warnings.append(f"cannot read {path}: {exc}")
                continue
            for i, text in enumerate(_parse_fortunes(raw)):
                text = _truncate(text, self.max_chars)
                out.append(Sample(f"fortunes/{name}#{i}", "fortunes", f"{name} #{i}: {_snippet(text, 40)}", text))
        return out

    def _build_files(self) -> list[Sample]:
        root = self.samples_dir
        if root is None:
            return []
        paths = sorted(
            p
            for p in root.rglob("*")
            if p.suffix.lower() in (".txt", ".jsonl")
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        out: list[Sample] = []
        for path in paths:
            rel = path.relative_to(root).as_posix()
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.warnings.append(f"{rel}: skipped, cannot read it as UTF-8 text ({exc})")
                continue
            if path.suffix.lower() == ".txt":
                out.extend(self._txt_samples(rel, raw))
            else:
                out.extend(self._jsonl_samples(rel, raw))
        return out

    def _txt_samples(self, rel: str, raw: str) -> list[Sample]:
        chunks = _pack(_paragraphs(raw), self.max_chars)
        if not chunks:
            self.warnings.append(f"{rel}: no text")
        return [
            Sample(f"files/{rel}#{i}", "files", f"{rel} #{i}: {_snippet(text, 32)}", text)
            for i, text in enumerate(chunks)
        ]

    def _jsonl_samples(self, rel: str, raw: str) -> list[Sample]:
        out = []
        for lineno, line in enumerate(raw.splitlines()):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                self.warnings.append(f"{rel}:{lineno + 1}: malformed JSON ({exc.msg}); line skipped")
                continue
            text = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                self.warnings.append(f"{rel}:{lineno + 1}: no non-empty string field 'text'; line skipped")
                continue
            title = obj.get("title")
            if not isinstance(title, str) or not title.strip():
                title = f"{rel} #{lineno}: {_snippet(text, 32)}"
            out.append(Sample(f"files/{rel}#{lineno}", "files", title.strip(), _truncate(text, self.max_chars)))
        return out
