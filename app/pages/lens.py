"""Lens (/lens) — placeholder until the page lands."""

from __future__ import annotations

import dash
from dash import html

dash.register_page(__name__, path="/lens", name="Lens", title="Glassbox · Lens")


def layout(**_query: str) -> html.Div:
    return html.Div([html.H4("Lens"), html.P("This page is being built.", className="text-muted")])
