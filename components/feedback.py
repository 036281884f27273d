"""Visible, dismissable messages instead of stack traces or dead callbacks."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html


def error_alert(alert_id: str | dict) -> dbc.Alert:
    """A hidden, dismissable danger alert that callbacks open with a message."""
    return dbc.Alert(id=alert_id, color="danger", dismissable=True, is_open=False, className="gb-error mb-2")


def info_note(text: str, note_id: str | None = None) -> html.Div:
    kwargs = {"id": note_id} if note_id else {}
    return html.Div(text, className="text-muted small gb-note", **kwargs)


def loading(children: object, loading_id: str | None = None) -> object:
    """Wrap slow outputs in a spinner that appears only after a short delay."""
    from dash import dcc

    kwargs = {"id": loading_id} if loading_id else {}
    return dcc.Loading(children, type="dot", delay_show=250, **kwargs)
