"""Visible messages instead of stack traces or dead callbacks: the page's one alert, field feedback, notes.

Every page has one alert (``{page}-error``) that the callback error handler fills (``callbacks.common``),
plus a store naming the callback that opened it, so that callback's next success closes it. A field that
can hold a bad value sits beside a ``{field}-feedback`` element that shows its message in place.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html


def error_alert(page: str) -> html.Div:
    """The page's one alert (hidden, dismissable) and the store of the callback that opened it."""
    return html.Div([
        dbc.Alert(id=f"{page}-error", color="danger", dismissable=True, is_open=False, className="gb-error mb-2"),
        dcc.Store(id=f"{page}-error-owner"),
    ])


def info_note(text: str, note_id: str | None = None) -> html.Div:
    kwargs = {"id": note_id} if note_id else {}
    return html.Div(text, className="text-muted small gb-note", **kwargs)


def loading(children: object, loading_id: str | None = None) -> object:
    """Wrap slow outputs in a spinner that appears after a short delay."""
    kwargs = {"id": loading_id} if loading_id else {}
    return dcc.Loading(children, type="dot", delay_show=250, **kwargs)


RUNNING_SHOWN = {"display": "flex"}
RUNNING_HIDDEN = {"display": "none"}


def running_line(prefix: str) -> html.Div:
    """A spinner + a line saying what runs (``<prefix>-msg``), shown while a callback runs: the callback
    passes ``running=[(Output("<prefix>-box", "style"), RUNNING_SHOWN, RUNNING_HIDDEN)]``."""
    return html.Div([dbc.Spinner(size="sm", color="primary", spinner_class_name="me-2"), html.Span(id=f"{prefix}-msg")],
                    id=f"{prefix}-box", className="gb-loading small text-muted align-items-center mb-2",
                    style=RUNNING_HIDDEN)
