"""Page state in the URL query: a store per page that a clientside callback mirrors into the URL.

``history.replaceState`` is used (not a dcc.Location write) so the page is not re-rendered and
no history entry is added per keystroke; the link always reproduces the view.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from dash import dcc, html


def url_state(page: str, state: dict[str, Any] | None = None) -> html.Div:
    """Hidden store whose data (a flat dict) becomes the page URL's query string."""
    return html.Div(
        [
            dcc.Store(id={"type": "url-state", "page": page}, data=state or {}),
            html.Div(id={"type": "url-state-sink", "page": page}, style={"display": "none"}),
        ]
    )


def query_string(state: dict[str, Any]) -> str:
    """The query string for a state dict (None and empty values dropped)."""
    clean = {k: v for k, v in state.items() if v is not None and v != ""}
    return "?" + urlencode(clean) if clean else ""
