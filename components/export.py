"""Export buttons for any graph: SVG / PNG / PDF in the paper theme, rendered server-side by kaleido.

``export_bar("lens-grid", "lens-grid")`` next to a ``dcc.Graph(id="lens-grid")`` is all a page needs:
a clientside callback reads the drawn figure from the graph's DOM node (so the export is exactly
what is on screen) and the server renders it with the paper theme.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

FORMATS = (("SVG", "svg"), ("PNG", "png"), ("PDF", "pdf"))


def export_bar(graph_id: str, filename: str, label: str = "Export") -> html.Div:
    """Small button group that downloads ``filename.<fmt>`` of graph ``graph_id``."""
    buttons = [
        dbc.Button(name, id={"type": "gb-export", "target": graph_id, "fmt": fmt}, size="sm", color="secondary",
                   outline=True, n_clicks=0, title=f"Download as {name} (paper theme)")
        for name, fmt in FORMATS
    ]
    return html.Div(
        [
            html.Span(label, className="small text-muted me-2"),
            dbc.ButtonGroup(buttons, size="sm"),
            dcc.Store(id={"type": "gb-export-req", "target": graph_id}, data={"filename": filename}),
            dcc.Download(id={"type": "gb-export-dl", "target": graph_id}),
        ],
        className="d-inline-flex align-items-center gb-export",
    )
