"""The offline text sources of the sample library and their parsers (pure functions, unit-testable).

Each source is present only when it exists on this machine:

- ``prose``: CPython's ``pydoc_data.topics`` (English reference prose), always present.
- ``code``: a fixed list of standard-library modules, chunked at top-level def/class boundaries.
- ``scripture``: King James Bible chapters via the Debian ``bible`` command (bible-kjv).
- ``jargon``: the Jargon File (Debian ``jargon-text``), one sample per entry.
- ``fortunes``: a few ``fortune`` files (Debian ``fortunes``).
- ``files``: ``.txt``/``.jsonl`` files in a user-supplied samples directory.

Each ``build_<source>(max_chars, warnings)`` returns the source's samples (problems are appended to
``warnings``, never raised). No Dash, no torch.
"""

from __future__ import annotations

import ast
import functools
import gzip
import itertools
import json
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.corpus.text import pack_paragraphs, paragraphs, read_text, slug, snippet, truncate

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

@dataclass(frozen=True)
class Sample:
    """One analysable text with a stable id (``"<source>/<name>"``)."""

    sample_id: str
    source: str
    title: str
    text: str


# ---------------------------------------------------------------------------------------------
# parsers

@functools.lru_cache(maxsize=256)
def file_code_blocks(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """:func:`code_blocks` of a file, cached per process (parsing the stdlib takes ~0.5 s)."""
    return tuple((text, tuple(names)) for text, names in code_blocks(read_text(Path(path))))


def code_blocks(source: str) -> list[tuple[str, list[str]]]:
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


def chunk_code(blocks: Iterable[tuple[str, Sequence[str]]], target: int, limit: int) -> list[tuple[str, list[str]]]:
    """Pack top-level blocks into chunks of at most ``min(target, limit)`` chars; a longer
    block (a big class) is split at blank lines."""
    target = min(target, limit)
    chunks: list[tuple[str, list[str]]] = []
    cur, cur_names = "", []
    for text, names in blocks:
        parts = [text] if len(text) <= target else pack_paragraphs(paragraphs(text), target)
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


VERSE_RE = re.compile(r"^\s+(\d+)\s+(.*)$")


def parse_bible(output: str, book: str) -> list[tuple[int, list[str]]]:
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
        v = VERSE_RE.match(line)
        if v:
            verses.append(v.group(2).strip())
        elif line.strip() and verses:
            verses[-1] = f"{verses[-1]} {line.strip()}"  # wrapped verse continuation
    return [(n, vs) for n, vs in chapters if vs]


_JARGON_ENTRY_RE = re.compile(r"^   :([^:]+):\s*(.*)$")
_JARGON_LETTER_RE = re.compile(r"^  [A-Z0-9]\s*$")
_JARGON_PART_RE = re.compile(r"^\s+Part\s+[IVX]+\.")
_BOX_CHARS_RE = re.compile("[\u2500-\u257f]")


def reflow(body_lines: list[str]) -> str:
    """Join hard-wrapped prose paragraphs; keep tables, art and indented blocks as they are."""
    paras = paragraphs("\n".join(body_lines))
    out = []
    for para in paras:
        lines = para.split("\n")
        if all(ln and not ln[0].isspace() for ln in lines) and not _BOX_CHARS_RE.search(para):
            out.append(" ".join(ln.strip() for ln in lines))
        else:
            out.append(para)
    return "\n\n".join(out)


def parse_jargon(raw: str) -> list[tuple[str, str]]:
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
        text = reflow(body)
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


def parse_fortunes(raw: str) -> list[str]:
    """Fortunes of a ``%``-separated fortune file."""
    items = re.split(r"^%[ \t]*$", raw.replace("\r\n", "\n"), flags=re.MULTILINE)
    return [it.strip("\n").rstrip() for it in items if it.strip()]


# ---------------------------------------------------------------------------------------------
# builders

def build_prose(max_chars: int, warnings: list[str]) -> list[Sample]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        warnings.append("pydoc_data.topics is missing from this Python; no prose samples")
        return []
    out = []
    for key in sorted(topics):
        text = truncate(topics[key], max_chars)
        if text:
            out.append(Sample(f"prose/{key}", "prose", key, text))
    return out


def build_code(max_chars: int, warnings: list[str]) -> list[Sample]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    target = min(CODE_CHUNK_CHARS, max_chars)
    out = []
    for rel in CODE_MODULES:
        path = stdlib / rel
        if not path.is_file():
            continue
        module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        try:
            stat = path.stat()
            blocks = file_code_blocks(str(path), stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            warnings.append(f"cannot read {path}: {exc}")
            continue
        for i, (text, names) in enumerate(chunk_code(blocks, target, max_chars)):
            if names:
                shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
                title = f"{module}: {shown}"
            else:
                title = f"{module} (module top)" if i == 0 else f"{module} #{i}"
            out.append(Sample(f"code/{module}#{i}", "code", title, text))
    return out


def build_scripture(max_chars: int, warnings: list[str]) -> list[Sample]:
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
            warnings.append(f"bible {book}: {type(exc).__name__}: {exc}")
            continue
        if proc.returncode != 0:
            warnings.append(f"bible {book}: exit status {proc.returncode}: {proc.stderr.strip()[:200]}")
            continue
        for chapter, verses in parse_bible(proc.stdout, book):
            if chapter > last:
                break
            text = truncate("\n".join(verses), max_chars)
            out.append(Sample(f"scripture/{slug(book)}-{chapter}", "scripture", f"{book} {chapter}", text))
    return out


def build_jargon(max_chars: int, warnings: list[str]) -> list[Sample]:
    if not JARGON_PATH.is_file():
        return []
    try:
        with gzip.open(JARGON_PATH, "rb") as fh:
            raw = fh.read().decode("utf-8", errors="replace")
    except (OSError, EOFError) as exc:
        warnings.append(f"cannot read {JARGON_PATH}: {exc}")
        return []
    out = []
    used: set[str] = set()
    for term, text in parse_jargon(raw):
        name = base = slug(term)
        k = 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        out.append(Sample(f"jargon/{name}", "jargon", term, truncate(text, max_chars)))
    return out


def build_fortunes(max_chars: int, warnings: list[str]) -> list[Sample]:
    out = []
    for name in FORTUNE_FILES:
        path = FORTUNES_DIR / name
        if not path.is_file():
            continue
        try:
            raw = read_text(path)
        except OSError as exc:
            warnings.append(f"cannot read {path}: {exc}")
            continue
        for i, text in enumerate(parse_fortunes(raw)):
            text = truncate(text, max_chars)
            out.append(Sample(f"fortunes/{name}#{i}", "fortunes", f"{name} #{i}: {snippet(text, 40)}", text))
    return out


def build_files(root: Path | None, max_chars: int, warnings: list[str]) -> list[Sample]:
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
            warnings.append(f"{rel}: skipped, cannot read it as UTF-8 text ({exc})")
            continue
        if path.suffix.lower() == ".txt":
            out.extend(txt_samples(rel, raw, max_chars, warnings))
        else:
            out.extend(jsonl_samples(rel, raw, max_chars, warnings))
    return out


def txt_samples(rel: str, raw: str, max_chars: int, warnings: list[str]) -> list[Sample]:
    chunks = pack_paragraphs(paragraphs(raw), max_chars)
    if not chunks:
        warnings.append(f"{rel}: no text")
    return [
        Sample(f"files/{rel}#{i}", "files", f"{rel} #{i}: {snippet(text, 32)}", text)
        for i, text in enumerate(chunks)
    ]


def jsonl_samples(rel: str, raw: str, max_chars: int, warnings: list[str]) -> list[Sample]:
    out = []
    for lineno, line in enumerate(raw.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.append(f"{rel}:{lineno + 1}: malformed JSON ({exc.msg}); line skipped")
            continue
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            warnings.append(f"{rel}:{lineno + 1}: no non-empty string field 'text'; line skipped")
            continue
        title = obj.get("title")
        if not isinstance(title, str) or not title.strip():
            title = f"{rel} #{lineno}: {snippet(text, 32)}"
        out.append(Sample(f"files/{rel}#{lineno}", "files", title.strip(), truncate(text, max_chars)))
    return out
