"""Model I/O shared by every page: padding id, corpus packing, token decoding, token search.

One home each: the padding id (``pad_id``), the corpus packer with a named BOS/EOS policy
(``pack_rows`` + ``PackPolicy``), the token decoder that shows partial UTF-8 byte tokens as their bytes
(``TokenDecoder``: ``<0xE2>``, never the replacement character), and the search from a typed string to
vocabulary ids (``token_ids_for``). The logit readout of a direction lives in :mod:`analysis.readout`.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.errors import InputError

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    bad = error.object[error.start : error.end]
    return "".join(f"<0x{b:02X}>" for b in bad), error.end


codecs.register_error("glassbox-hex", _hex_bytes)


def pad_id(tokenizer: Any) -> int:
    """The id used to pad batches: the tokenizer's pad token, else its EOS, else 0 (masked out anyway)."""
    if tokenizer is None:
        return 0
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def pad_right(rows: list[list[int]], pad: int) -> tuple[Any, Any]:
    """(input_ids [B, T], attention_mask [B, T]) with real tokens first, right-padded with ``pad`` to the
    longest row (the one padding helper of every batched job)."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def special_prefix(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts before a text (e.g. BOS), so a packed row starts like a run."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    n = len(with_special) - len(plain)
    return list(with_special[:n]) if n > 0 and with_special[n:] == plain else []


@dataclass(frozen=True)
class PackPolicy:
    """How documents become fixed-length rows.

    ``prefix``: what starts every row: ``"tokenizer"`` (the special tokens the tokenizer itself adds to a
    text, so a row starts like a page's run of a text; nothing for SmolLM2, BOS for Llama-2/Gemma),
    ``"bos"`` (the BOS token when the tokenizer has one) or ``"none"``. ``separator``: what sits between
    two documents in the stream: ``"eos"`` (as Neuroscope and sae-lens do) or ``"none"``.
    """

    prefix: str = "tokenizer"
    separator: str = "eos"

    def prefix_ids(self, tokenizer: Any) -> list[int]:
        if self.prefix == "tokenizer":
            return special_prefix(tokenizer)
        if self.prefix == "bos":
            bos = getattr(tokenizer, "bos_token_id", None)
            return [int(bos)] if bos is not None else []
        if self.prefix == "none":
            return []
        raise InputError(f"Unknown row prefix '{self.prefix}': use tokenizer, bos or none.")

    def separator_ids(self, tokenizer: Any) -> list[int]:
        if self.separator == "eos":
            eos = getattr(tokenizer, "eos_token_id", None)
            return [int(eos)] if eos is not None else []
        if self.separator == "none":
            return []
        raise InputError(f"Unknown document separator '{self.separator}': use eos or none.")


RUN_LIKE = PackPolicy("tokenizer", "eos")  # the default of every corpus job


def pack_rows(tokenizer: Any, texts: Iterable[str], n_tokens: int, seq_len: int,
              policy: PackPolicy = RUN_LIKE, min_tail: int = 8) -> list[list[int]]:
    """Rows of exactly ``seq_len`` tokens (a last, shorter row only when it has >= ``min_tail``), about
    ``n_tokens`` in all: the texts are concatenated with the policy's separator between them and cut into
    rows, each starting with the policy's prefix. Packing leaves no padding in the batches."""
    prefix = policy.prefix_ids(tokenizer)
    sep = policy.separator_ids(tokenizer)
    body = seq_len - len(prefix)
    if body < 1:
        raise InputError(f"Rows of {seq_len} tokens leave no room after the {len(prefix)}-token prefix.")
    rows: list[list[int]] = []
    buffer: list[int] = []
    total = 0
    for text in texts:
        buffer += tokenizer(text, add_special_tokens=False)["input_ids"] + sep
        while len(buffer) >= body:
            row = prefix + buffer[:body]
            buffer = buffer[body:]
            take = min(len(row), n_tokens - total)
            rows.append(row[:take])
            total += take
            if total >= n_tokens:
                return [r for r in rows if len(r) > len(prefix)]
    if len(buffer) >= min_tail and total < n_tokens:
        rows.append((prefix + buffer)[: n_tokens - total])
    return [r for r in rows if len(r) > len(prefix)]


class TokenDecoder:
    """Each token's own text as the model sees it, one string per id, cached per id (thread-safe).

    A byte-level BPE piece that holds part of a multi-byte character (``Ġâ`` = b" \\xe2") shows the
    valid part as text and each dangling byte as ``<0xE2>``; SentencePiece byte pieces (``<0xE2>``) stay
    as they are. So a table never shows the replacement character for what is really a byte.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        self._lock = threading.Lock()
        self._byte_decoder = _byte_level_decoder(tokenizer)

    def _one(self, token_id: int) -> str:
        tok = self.tokenizer
        if tok is None:
            return f"<{token_id}>"
        text = tok.decode([token_id])
        if "\ufffd" not in text:
            return text
        piece = tok.convert_ids_to_tokens(token_id)
        if piece is None:
            return f"<{token_id}>"
        if _BYTE_PIECE.match(piece):
            return piece.upper().replace("0X", "0x")
        if self._byte_decoder is not None and all(ch in self._byte_decoder for ch in piece):
            raw = bytes(self._byte_decoder[ch] for ch in piece)
            return raw.decode("utf-8", errors="glassbox-hex")
        return text

    def decode(self, token_ids: Sequence[int]) -> list[str]:
        out = []
        for raw in token_ids:
            token_id = int(raw)
            with self._lock:
                text = self._cache.get(token_id)
            if text is None:
                text = self._one(token_id)
                with self._lock:
                    self._cache[token_id] = text
            out.append(text)
        return out

    def __call__(self, token_ids: Sequence[int]) -> list[str]:
        return self.decode(token_ids)


def _byte_level_decoder(tokenizer: Any) -> dict[str, int] | None:
    """GPT-2's printable-character -> byte map when the tokenizer is byte-level BPE, else None."""
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None) if backend is not None else None
    if decoder is None or "ByteLevel" not in repr(decoder):
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_ids_for(tokenizer: Any, token: str, max_chars: int = 100) -> list[int]:
    """Vocabulary ids a typed search string can mean: itself, with a leading space and stripped, when each
    is a single token; else the first tokens of its encoding. Empty or overlong input is an InputError."""
    if token is None or (not token.strip() and token != " "):
        raise InputError("The token to search is empty: type a token, e.g. ' the'.")
    if len(token) > max_chars:
        raise InputError(f"The token to search has {len(token)} characters; the limit is {max_chars}.")
    out = []
    for variant in dict.fromkeys([token, " " + token.lstrip(), token.strip()]):
        if not variant:
            continue
        ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out.append(int(ids[0]))
    if not out:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        out = [int(i) for i in ids[:4]]
    if not out:
        raise InputError(f"'{token}' does not tokenize to anything.")
    return list(dict.fromkeys(out))
