"""Home (/): what Glassbox offers, loaded models, device and memory."""

from __future__ import annotations

import dash
from dash import dcc, html

import callbacks.home  # noqa: F401 - registers the page's callbacks
from callbacks.home import current_status
from components.feedback import error_alert
from components.home_status import page_cards, status_table

dash.register_page(__name__, path="/", name="Home", title="Glassbox")


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H3("Glassbox", className="mb-1"),
            html.P("Open up a language model: token by token, layer by layer, neuron by neuron and feature by feature.",
                   className="text-muted"),
            page_cards(),
            html.H5("Models and machine", className="mt-3"),
            error_alert("home"),
            html.Div(status_table(current_status()), id="home-status"),
            dcc.Interval(id="home-refresh", interval=5000),
        ]
    )
