"""The token strip: one sample rendered as clickable token chips (coloured in the browser).

The strip's structure is sent once per model+text; a tool/layer/token change sends only the
values (see ``assets/tokens.js``, which paints the chips and sets their tooltips).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import html

from components.text import token_label, word_piece


def token_chip(sample: int, index: int, token: str, word_pieces: bool = False) -> list[Any]:
    """A token chip (+ a line break after newline tokens, kept even when they are hidden).

    With ``word_pieces`` (an encoder's WordPiece vocabulary) a ``##`` piece is drawn as the continuation
    of the word before it (no gap, a dotted joint) and a word start gets its space back, so
    "exceptions are a means of" reads as words and wraps at their spaces.
    """
    classes = "gb-tok gb-tok-nl" if "\n" in token else "gb-tok"
    text = token_label(token)
    if word_pieces:
        text, continuation = word_piece(text)
        classes += " gb-tok-cont" if continuation else " gb-tok-word"
    chip = html.Span(text, className=classes, **{"data-s": sample, "data-i": index})
    return [chip] + [html.Br() for _ in range(min(token.count("\n"), 2))]


def strip(sample: int, title: str, tokens: Sequence[str], show_newlines: bool = True,
          word_pieces: bool = False) -> html.Div:
    """One sample's strip with its title line."""
    chips: list[Any] = []
    for i, tok in enumerate(tokens):
        chips.extend(token_chip(sample, i, tok, word_pieces))
    return html.Div(
        [
            html.Div([html.Span(f"#{sample + 1} ", className="fw-semibold"), title,
                      html.Span(f" · {len(tokens)} tokens", className="text-muted")],
                     className="small mb-1 gb-strip-title"),
            html.Div(chips, id={"type": "tokens-strip", "index": sample},
                     className="gb-strip" + ("" if show_newlines else " gb-hide-nl")),
        ],
        className="gb-strip-box mb-2",
    )


def strips(samples: Sequence[dict[str, Any]], show_newlines: bool = True, word_pieces: bool = False) -> list[html.Div]:
    """Stacked strips, one per open sample (``{"title", "tokens"}`` dicts)."""
    return [strip(k, s["title"], s["tokens"], show_newlines, word_pieces) for k, s in enumerate(samples)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def legend(lo: float, mid: float, hi: float, label: str, diverging: bool,
           neg: str = "#2166ac", pos: str = "#b2182b") -> html.Div:
    """The colour scale with its limits shown: min, divider, max."""
    gradient = (f"linear-gradient(to right, {neg}, white 50%, {pos})" if diverging
                else f"linear-gradient(to right, white, {pos})")
    return html.Div(
        [
            html.Span(label, className="small fw-semibold me-3 gb-legend-label"),
            html.Span("min", className="small text-muted me-1"), html.Code(_fmt(lo), id="tokens-scale-min"),
            html.Div(className="gb-legend-bar mx-2", style={"background": gradient}),
            html.Span("max", className="small text-muted me-1"), html.Code(_fmt(hi), id="tokens-scale-max"),
            html.Span("divider", className="small text-muted ms-3 me-1"), html.Code(_fmt(mid), id="tokens-scale-mid"),
        ],
        className="d-flex align-items-center flex-wrap gb-legend",
    )
