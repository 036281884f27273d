"""Shared figure toolkit: the screen and paper themes, colour scales, export config for every graph.

Every plotly figure of every page goes through :func:`graph`, so its mode-bar camera downloads an
SVG at publication scale, and through :func:`paper_figure` for PNG/PDF/SVG export with the paper theme.
"""

from __future__ import annotations

import copy
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from dash import dcc

FONT = "Inter, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
PAPER_FONT = "'Times New Roman', 'Nimbus Roman', 'DejaVu Serif', serif"
DIVERGING = "RdBu_r"  # negative blue, positive red, white at zero
SEQUENTIAL = "Viridis"
PROBABILITY = "Blues"
CATEGORY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MEDIAN_COLOUR = "#ff7f0e"  # the median token's histogram (orange)
SELECTED_COLOUR = "#1f77b4"  # the selected token (blue)

SCREEN = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT, size=13, color="#212529"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin=dict(l=60, r=20, t=40, b=50),
        colorway=CATEGORY_COLOURS,
        xaxis=dict(gridcolor="#eceff1", zerolinecolor="#cfd8dc", linecolor="#90a4ae"),
        yaxis=dict(gridcolor="#eceff1", zerolinecolor="#cfd8dc", linecolor="#90a4ae"),
        hoverlabel=dict(font=dict(family="ui-monospace, SFMono-Regular, Menlo, monospace", size=12)),
    )
)
PAPER = go.layout.Template(
    layout=go.Layout(
        font=dict(family=PAPER_FONT, size=14, color="black"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin=dict(l=60, r=20, t=30, b=50),
        colorway=CATEGORY_COLOURS,
        xaxis=dict(showgrid=False, linecolor="black", ticks="outside", mirror=True, zeroline=False),
        yaxis=dict(showgrid=False, linecolor="black", ticks="outside", mirror=True, zeroline=False),
    )
)
pio.templates["glassbox"] = SCREEN
pio.templates["glassbox_paper"] = PAPER
EXPORT_FORMATS = ("svg", "png", "pdf")


def themed(fig: go.Figure, title: str | None = None) -> go.Figure:
    """Apply the screen theme (and an optional title) to a figure."""
    fig.update_layout(template="glassbox")
    if title is not None:
        fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", font=dict(size=15)))
    return fig


def paper_figure(fig: go.Figure | dict[str, Any], font: str = PAPER_FONT, font_size: int = 14) -> go.Figure:
    """A copy of ``fig`` in the paper theme: white, serif, no UI chrome (no sliders/menus)."""
    out = go.Figure(copy.deepcopy(fig.to_dict() if isinstance(fig, go.Figure) else fig), skip_invalid=True)
    out.update_layout(template="glassbox_paper", font=dict(family=font, size=font_size, color="black"),
                      paper_bgcolor="white", plot_bgcolor="white")
    out.layout.updatemenus = ()  # update_layout merges lists; assignment really removes the UI chrome
    out.layout.sliders = ()
    return out


def export_config(filename: str, fmt: str = "svg", scale: int = 3) -> dict[str, Any]:
    """Plotly config: the mode-bar camera saves ``filename.fmt`` at ``scale``x, no plotly logo."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": scale},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def graph(fig: go.Figure | None, graph_id: str | dict, filename: str, height: int | str | None = None, **kwargs: Any) -> dcc.Graph:
    """A ``dcc.Graph`` wired with the export config; ``fig`` may be None for an empty placeholder."""
    style = dict(kwargs.pop("style", {}))
    if height is not None:
        style["height"] = height if isinstance(height, str) else f"{height}px"
    return dcc.Graph(id=graph_id, figure=fig if fig is not None else empty_figure(), config=export_config(filename),
                     style=style, **kwargs)


def empty_figure(message: str = "") -> go.Figure:
    """A blank themed figure with an optional centred message (used while nothing is selected)."""
    fig = go.Figure()
    fig.update_layout(template="glassbox", xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=10, r=10, t=10, b=10), height=220)
    if message:
        fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#6c757d"),
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def figure_bytes(fig: go.Figure | dict[str, Any], fmt: str = "svg", scale: int = 3, width: int | None = None,
                 height: int | None = None, paper: bool = True) -> bytes:
    """Render a figure to SVG/PNG/PDF bytes with kaleido (headless Chromium), paper theme by default."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown figure format '{fmt}': use one of {', '.join(EXPORT_FORMATS)}.")
    import os

    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    out = paper_figure(fig) if paper else go.Figure(fig)
    try:
        return pio.to_image(out, format=fmt, scale=scale, width=width, height=height)
    except Exception as exc:  # kaleido 1.x: a tab queried before its page script loaded ("kaleido_scopes is
        if type(exc).__name__ != "JavascriptError":  # not defined") - a startup race; one retry renders it
            raise
        return pio.to_image(out, format=fmt, scale=scale, width=width, height=height)
