"""How a token is shown: the one home for token display in chips, tables, hovers and figure axes.

Tokens arrive already decoded by the analysis layer's one decoder (byte tokens as ``<0xE2>``).
``show_token`` (tables, lists, hovers, axes): newlines and tabs as symbols, a leading space as a middle
dot so " E" and "E" differ. ``token_label`` (token chips, whose borders show the spaces): symbols only.
``word_piece`` splits an encoder's ``##`` continuation piece from a word start.
"""

from __future__ import annotations

NEWLINE = "↵"
TAB = "⇥"
SPACE = "·"


def show_token(tok: str, limit: int | None = None) -> str:
    """A token made visible: newlines/tabs as symbols, a leading space as a middle dot."""
    out = tok.replace("\n", NEWLINE).replace("\t", TAB).replace("\r", "")
    if out.startswith(" "):
        out = SPACE + out[1:]
    if out == "":
        out = "∅"
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def token_label(token: str) -> str:
    """Visible text of a token chip: newlines and tabs become arrows, a token of spaces keeps its width
    (non-breaking spaces), the rest stays as is."""
    out = token.replace("\n", NEWLINE).replace("\t", TAB).replace("\r", "")
    if not out:
        return "∅"
    return out.replace(" ", "\u00a0") if not out.strip() else out


def word_piece(token: str) -> tuple[str, bool]:
    """(text, is_continuation) of a WordPiece token: ``##ing`` -> ("ing", True); a word -> (" word", False);
    special tokens such as ``[CLS]`` stay as they are."""
    if token.startswith("##") and len(token) > 2:
        return token[2:], True
    if token.startswith("[") and token.endswith("]"):
        return token, False
    return " " + token, False
