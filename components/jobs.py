"""The one job panel: start and cancel buttons, a progress bar with its phase, rate and ETA, a message.

Polled by ``callbacks.common.register_job`` (a ``dcc.Interval`` enabled only while a job runs); the job
itself runs in the server (``analysis.jobs.JobRegistry``), so a reload or a second user sees the same job.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html


def job_panel(prefix: str, start_label: str, extra: list | None = None, start_disabled: bool = False) -> html.Div:
    """Ids: ``{prefix}-start``, ``-cancel``, ``-progress``, ``-msg``, ``-poll``, ``-key``, ``-done``."""
    return html.Div(
        [
            html.Div(
                [*(extra or []),
                 dbc.Button(start_label, id=f"{prefix}-start", size="sm", color="primary", className="me-2",
                            disabled=start_disabled, n_clicks=0),
                 dbc.Button("Cancel", id=f"{prefix}-cancel", size="sm", color="secondary", outline=True,
                            disabled=True, className="me-3", n_clicks=0),
                 dbc.Progress(id=f"{prefix}-progress", value=0, label="", striped=True, animated=False,
                              style={"height": "20px", "flex": "1", "minWidth": "200px"}, className="gb-job-bar")],
                className="d-flex align-items-end flex-wrap gap-1",
            ),
            html.Div(id=f"{prefix}-msg", className="small mt-1 gb-job-msg"),
            dcc.Interval(id=f"{prefix}-poll", interval=1000, disabled=True),
            dcc.Store(id=f"{prefix}-key"),
            dcc.Store(id=f"{prefix}-done"),
        ],
        className="gb-job",
    )
