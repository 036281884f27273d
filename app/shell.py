"""The shell around every page: navbar with the pages, device badge, the model-loading bar, page container.

A page that needs a model which is not loaded yet starts its load as a job (``Runtime.start_loading``);
the bar under the navbar shows that job's phase and progress (the one-time GGUF conversion included)
until the model is ready, and hides itself when nothing loads (``callbacks.shell``).
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from analysis.models import resolve_device
from analysis.runtime import get_runtime
from components.edits_bar import edits_bar

NAV = [
    ("Home", "/"),
    ("Tokens", "/tokens"),
    ("Lens", "/lens"),
    ("Regions", "/regions"),
    ("Features", "/features"),
    ("Neurons", "/neurons"),
    ("Circuits", "/circuits"),
]


def lazy_warmup() -> html.Div:
    """One hidden instance of each lazily loaded dcc component, rendered with the shell.

    dcc renders these through ``React.lazy``; the first instance suspends, and React's retry of a
    suspended boundary waits while updates keep coming (the model-load poll, job polls), so a page's
    Model and Sample dropdowns stayed blank for up to 90 s during a first model load. Resolving the
    lazy components here, before any page callback runs, lets the pages render them at once.
    """
    return html.Div([dcc.Dropdown(id="shell-warm-dropdown", options=[]), dcc.Graph(id="shell-warm-graph"),
                     dcc.Slider(id="shell-warm-slider", min=0, max=1), dcc.Upload(id="shell-warm-upload")],
                    style={"display": "none"}, **{"aria-hidden": "true"})


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
    loading = html.Div(
        [dbc.Progress(id="shell-model-progress", value=0, striped=True, animated=True, className="mb-1",
                      style={"height": "18px"}),
         html.Div(id="shell-model-msg", className="small text-muted")],
        id="shell-model", className="gb-model-load container-fluid mb-2", style={"display": "none"},
    )
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            navbar,
            loading,
            edits_bar(),
            dcc.Interval(id="shell-model-poll", interval=700, max_intervals=-1),
            lazy_warmup(),
            dbc.Container(dash.page_container, fluid=True, className="gb-page"),
        ]
    )
