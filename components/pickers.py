"""The shared model and sample pickers every page uses (ids are prefixed by the page name)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

USER_SAMPLE = "user"


def model_options(models: Iterable[str], labels: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    labels = labels or {}
    return [{"label": labels.get(m, m), "value": m} for m in models]


def sample_options(samples: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    """(sample_id, source, title) rows -> dropdown options, your-own-text first."""
    options = [{"label": "✎ Your own text…", "value": USER_SAMPLE}]
    options += [{"label": f"{source} · {title}", "value": sample_id} for sample_id, source, title in samples]
    return options


def model_picker(page: str, models: Iterable[str], value: str, labels: Mapping[str, str] | None = None) -> html.Div:
    return html.Div(
        [
            dbc.Label("Model", html_for=f"{page}-model", className="small text-muted mb-0"),
            dcc.Dropdown(id=f"{page}-model", options=model_options(models, labels), value=value, clearable=False,
                         persistence=False),
        ],
        className="gb-picker",
    )


def sample_picker(page: str, samples: Sequence[tuple[str, str, str]], value: str, user_text: str = "",
                  multi: bool = False) -> html.Div:
    """Dropdown of the sample library plus a text area shown for "your own text"."""
    return html.Div(
        [
            dbc.Label("Sample", html_for=f"{page}-sample", className="small text-muted mb-0"),
            dcc.Dropdown(id=f"{page}-sample", options=sample_options(samples), value=value, clearable=False,
                         multi=multi, optionHeight=30, maxHeight=420,
                         className="gb-no-select-all" if multi else None),  # thousands of samples: no "Select All"
            dbc.Collapse(
                html.Div([dbc.Textarea(id=f"{page}-text", value=user_text, placeholder="Paste or type any text…",
                                       rows=4, className="mt-2 font-monospace small", debounce=True),
                          dbc.FormFeedback(type="invalid", id=f"{page}-text-feedback", className="gb-feedback")]),
                id=f"{page}-text-collapse",
                is_open=value == USER_SAMPLE or (multi and USER_SAMPLE in (value or [])),
            ),
        ],
        className="gb-picker",
    )


def picker_row(page: str, models: Iterable[str], model: str, samples: Sequence[tuple[str, str, str]], sample: str,
               user_text: str = "", labels: Mapping[str, str] | None = None, multi_sample: bool = False,
               extra: list | None = None) -> dbc.Row:
    """Model + sample pickers on one row, with optional extra columns."""
    cols = [
        dbc.Col(model_picker(page, models, model, labels), md=3),
        dbc.Col(sample_picker(page, samples, sample, user_text, multi=multi_sample), md=5),
    ]
    cols += [dbc.Col(item, md="auto") for item in (extra or [])]
    return dbc.Row(cols, className="g-3 mb-3 align-items-start")
