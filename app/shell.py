"""The shell around every page: navbar with the pages, device badge, page container."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from analysis.models import resolve_device
from analysis.runtime import get_runtime

NAV = [
    ("Home", "/"),
    ("Tokens", "/tokens"),
    ("Lens", "/lens"),
    ("Regions", "/regions"),
    ("Features", "/features"),
    ("Neurons", "/neurons"),
]


def shell_layout() -> html.Div:
    """Called per page load, so the badge shows the current device and model count."""
    runtime = get_runtime()
    device = str(resolve_device(runtime.settings.device))
    links = [dbc.NavItem(dbc.NavLink(name, href=href, active="exact", className="gb-navlink")) for name, href in NAV]
    navbar = dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand([html.Span("◧", className="gb-logo me-2"), "Glassbox"], href="/", className="fw-semibold"),
                dbc.Nav(links, navbar=True, className="me-auto"),
                html.Span(
                    [html.Span(device.upper(), className="badge bg-secondary me-2", id="shell-device"),
                     html.A("API", href="/api/v1/docs", className="text-light small me-2", target="_blank")],
                    className="d-flex align-items-center",
                ),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        className="mb-3 py-1",
    )
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            navbar,
            dbc.Container(dash.page_container, fluid=True, className="gb-page"),
        ]
    )
