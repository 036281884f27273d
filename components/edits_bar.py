"""The shell's edit bar: one edit list (and the source text a patch reads) shared by every page.

Kept per browser session (a session store) and in the URL (``edits=``, ``src=``), so a link reproduces an
edited view. Pages read the store; the edit list's box shows what is wrong with it, bound named.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

EDITS_HELP = ("neuron:L5.N123[=v|=mean] · head:L3.H2[=v|=mean] · feature[embedded]:F12[=v] (0 = ablate) · "
              "steer:L15.resid_post[@2-4]*8=feature[embedded]:F12 · patch:L6.resid_pre@3-4 (from the source text) "
              "— joined by ';'")
EDIT_PAGES = ("Tokens, Lens, Features, Neurons (try your text) and Circuits (attribution) show clean | edited | "
              "difference; Regions extracts the edited model")


def edits_bar() -> html.Div:
    """Collapsed to one line until an edit list is set or the user opens it."""
    return html.Div(
        [
            dcc.Store(id="shell-edits-store", storage_type="session"),
            html.Div(id="shell-edits-url-sink", style={"display": "none"}),
            html.Div(
                [
                    dbc.Button("Edits", id="shell-edits-toggle", size="sm", color="secondary", outline=True,
                               className="me-2 gb-edits-toggle", n_clicks=0),
                    html.Span(id="shell-edits-status", className="small text-muted gb-edits-status"),
                ],
                className="d-flex align-items-center",
            ),
            dbc.Collapse(
                html.Div(
                    [
                        html.Div([
                            dbc.Label("Edit list", html_for="shell-edits", className="small text-muted mb-0"),
                            dbc.Input(id="shell-edits", type="text", size="sm", debounce=True,
                                      placeholder="e.g. neuron:L5.N123; head:L3.H2=mean; feature[embedded]:F12=8"),
                            dbc.FormFeedback(type="invalid", id="shell-edits-feedback", className="gb-feedback"),
                        ], className="gb-edits-list"),
                        html.Div([
                            dbc.Label("Patch source text", html_for="shell-edits-source", className="small text-muted mb-0"),
                            dbc.Input(id="shell-edits-source", type="text", size="sm", debounce=True,
                                      placeholder="the text patch: edits copy from"),
                        ], className="gb-edits-source"),
                        dbc.Button("Clear", id="shell-edits-clear", size="sm", color="secondary", outline=True,
                                   className="align-self-end", n_clicks=0),
                        html.Div(f"{EDITS_HELP}. {EDIT_PAGES}.", className="small text-muted w-100 mt-1"),
                    ],
                    className="d-flex flex-wrap gap-2 align-items-start mt-1",
                ),
                id="shell-edits-collapse", is_open=False,
            ),
        ],
        id="shell-edits-bar", className="gb-edits-bar container-fluid mb-2",
    )


def edits_status(text: str, n_edits: int) -> str:
    """The bar's one-line summary."""
    if not n_edits:
        return "no edits: every page shows the clean model"
    return f"{n_edits} edit{'s' if n_edits > 1 else ''} on: {text} — {EDIT_PAGES}"
