"""Form fields that validate in place: the input and, right under it, its ``{id}-feedback`` message.

The server parses every value (``analysis.params``); a bad one marks the field ``invalid`` and writes the
message (which names the bound) into the feedback, never silently clamping. Inputs are plain text boxes
with a numeric keyboard where numbers are asked: the browser's own number box turns an out-of-range or
off-step entry into "no value" before the server sees it, so the server could only say "missing".
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import html


def field(field_id: str, label: str, value: Any = None, *, width: str = "110px", placeholder: str = "",
          numeric: bool = True, hint: str | None = None, debounce: bool = True, size: str = "sm",
          **input_props: Any) -> html.Div:
    """Label, input and in-place feedback; ``hint`` (e.g. "1-256") shows as the placeholder and the tooltip."""
    props: dict[str, Any] = {"inputMode": "decimal"} if numeric else {}
    props.update(input_props)
    box = dbc.Input(id=field_id, value="" if value is None else value, debounce=debounce, size=size,
                    placeholder=placeholder or (hint or ""), type="text", style={"width": width}, **props)
    return html.Div(
        [dbc.Label(label, html_for=field_id, className="small text-muted mb-0"), box,
         dbc.FormFeedback(type="invalid", id=f"{field_id}-feedback", className="gb-feedback", style={"maxWidth": "320px"})],
        className="gb-picker gb-field", title=hint or label,  # dbc.Input takes no title: the tooltip is the wrapper's
    )
