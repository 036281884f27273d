"""Neurons (/neurons) — placeholder until the page lands."""

from __future__ import annotations

import dash
from dash import html

dash.register_page(__name__, path="/neurons", name="Neurons", title="Glassbox · Neurons")


def layout(**_query: str) -> html.Div:
    return html.Div([html.H4("Neurons"), html.P("This page is being built.", className="text-muted")])
