"""Regions (/regions) — placeholder until the page lands."""

from __future__ import annotations

import dash
from dash import html

dash.register_page(__name__, path="/regions", name="Regions", title="Glassbox · Regions")


def layout(**_query: str) -> html.Div:
    return html.Div([html.H4("Regions"), html.P("This page is being built.", className="text-muted")])
