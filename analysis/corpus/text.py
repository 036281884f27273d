"""Plain-text helpers for the sample library: slugs, snippets, paragraph packing, truncation.

Pure Python (no torch, no Dash). Hand-written because the chunking rules (paragraphs first, then lines,
then spaces; short tails join the next text) are the library's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path


def slug(name: str) -> str:
    """Lower-case id fragment made of ``[a-z0-9-]``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "entry"


def snippet(text: str, width: int = 48) -> str:
    """First non-empty line of ``text``, shortened to ``width`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs (indentation kept, surrounding blank lines dropped)."""
    parts = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [p.strip("\n").rstrip() for p in parts if p.strip()]


def split_lines(text: str, limit: int) -> list[str]:
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


def pack_paragraphs(paragraphs: Iterable[str], limit: int, sep: str = "\n\n") -> list[str]:
    """Greedily join paragraphs with ``sep`` into chunks <= ``limit``; split longer ones by lines."""
    chunks: list[str] = []
    cur = ""
    for para in paragraphs:
        for piece in [para] if len(para) <= limit else split_lines(para, limit):
            if cur and len(cur) + len(sep) + len(piece) <= limit:
                cur = cur + sep + piece
            else:
                if cur:
                    chunks.append(cur)
                cur = piece
    if cur:
        chunks.append(cur)
    return chunks


def truncate(text: str, limit: int) -> str:
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


def read_text(path: Path) -> str:
    """File contents as UTF-8, falling back to Latin-1."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def chunk_texts(texts: Iterable[str], min_chars: int, max_chars: int) -> list[str]:
    """Chunks in [min_chars, max_chars] at paragraph/line boundaries; short tails join the next text."""
    out: list[str] = []
    seen: set[str] = set()
    carry = ""
    for text in texts:
        for piece in pack_paragraphs(paragraphs(text), max_chars):
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
