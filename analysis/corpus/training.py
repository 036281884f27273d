"""The training corpus: offline documents for training lenses and SAEs, larger than the sample library.

The sample library keeps its sources small and stable (pages and their tests show them); training wants
millions of tokens, so this module reads the same machines' texts more widely: the whole King James
Bible (one ``bible`` call), every standard-library module outside tests, every Debian fortune file, the
Jargon File and CPython's pydoc topics. Documents (<= ``doc_chars``) are interleaved round-robin across
sources (so every prefix of the list mixes them), deterministically; a fixed 1-in-``HOLDOUT_EVERY``
subset is held out for evaluation and never trained on.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.corpus.sources import (
    BIBLE_TIMEOUT_S,
    FORTUNES_DIR,
    JARGON_PATH,
    VERSE_RE,
    build_jargon,
    build_prose,
    chunk_code,
    file_code_blocks,
    parse_fortunes,
)
from analysis.corpus.text import chunk_texts, read_text

TRAINING_SOURCES: tuple[str, ...] = ("prose", "code", "scripture", "jargon", "fortunes")
HOLDOUT_EVERY = 50  # document i is held out when i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__", "turtledemo",
              "ensurepip", "config-3.11-x86_64-linux-gnu"}


@dataclass(frozen=True)
class TrainingCorpus:
    """Training and held-out documents, and how many characters each source gave."""

    train: list[str]
    heldout: list[str]
    chars_by_source: dict[str, int]

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.train)


def _prose(doc_chars: int, warnings: list[str]) -> list[str]:
    return chunk_texts((s.text for s in build_prose(10**7, warnings)), 200, doc_chars)


def _code(doc_chars: int, warnings: list[str]) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.rglob("*.py")
                   if not _SKIP_DIRS.intersection(p.relative_to(stdlib).parts) and not p.name.startswith("test_"))
    docs: list[str] = []
    for path in paths:
        try:
            stat = path.stat()
            blocks = file_code_blocks(str(path), stat.st_mtime_ns, stat.st_size)
        except (OSError, SyntaxError, ValueError) as exc:
            warnings.append(f"cannot read {path}: {exc}")
            continue
        docs += [text for text, _names in chunk_code(blocks, doc_chars, doc_chars) if len(text) >= 200]
    return docs


def _scripture(doc_chars: int, warnings: list[str]) -> list[str]:
    exe = shutil.which("bible")
    if not exe:
        return []
    try:
        proc = subprocess.run([exe, "-l10000", "gen1:1-rev22:21"], capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=BIBLE_TIMEOUT_S * 4, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.append(f"bible: {type(exc).__name__}: {exc}")
        return []
    chapters: list[list[str]] = []
    for line in proc.stdout.splitlines():  # a chapter header ("1 Kings 3") is the only unindented line
        if line.strip() and not line[0].isspace():
            chapters.append([])
        elif chapters and (verse := VERSE_RE.match(line)):
            chapters[-1].append(verse.group(2).strip())
    return chunk_texts(["\n".join(verses) for verses in chapters if verses], 200, doc_chars)


def _jargon(doc_chars: int, warnings: list[str]) -> list[str]:
    if not JARGON_PATH.is_file():
        return []
    return chunk_texts((s.text for s in build_jargon(10**7, warnings)), 200, doc_chars)


def _fortunes(doc_chars: int, warnings: list[str]) -> list[str]:
    if not FORTUNES_DIR.is_dir():
        return []
    items: list[str] = []
    for path in sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.suffix):
        try:
            items += parse_fortunes(read_text(path))
        except OSError as exc:
            warnings.append(f"cannot read {path}: {exc}")
    return chunk_texts(items, 200, doc_chars)


BUILDERS: dict[str, Callable[[int, list[str]], list[str]]] = {
    "prose": _prose, "code": _code, "scripture": _scripture, "jargon": _jargon, "fortunes": _fortunes,
}


def training_corpus(max_chars: int, heldout_chars: int = 400_000, sources: tuple[str, ...] = TRAINING_SOURCES,
                    doc_chars: int = 2000, warnings: list[str] | None = None) -> TrainingCorpus:
    """About ``max_chars`` characters of training documents and ``heldout_chars`` of held-out ones (every
    ``HOLDOUT_EVERY``-th document of the interleaved stream, never a training document)."""
    warnings = [] if warnings is None else warnings
    streams = {name: BUILDERS[name](doc_chars, warnings) for name in sources}
    streams = {name: docs for name, docs in streams.items() if docs}
    train: list[str] = []
    heldout: list[str] = []
    by_source = dict.fromkeys(streams, 0)
    n_train = n_heldout = 0
    index = 0
    for i in range(max((len(d) for d in streams.values()), default=0)):
        for name, docs in streams.items():
            if i >= len(docs):
                continue
            doc = docs[i]
            if index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1:
                if n_heldout < heldout_chars:
                    heldout.append(doc)
                    n_heldout += len(doc)
            elif n_train < max_chars:
                train.append(doc)
                by_source[name] += len(doc)
                n_train += len(doc)
            index += 1
            if n_train >= max_chars and n_heldout >= heldout_chars:
                return TrainingCorpus(train, heldout, by_source)
    return TrainingCorpus(train, heldout, by_source)
