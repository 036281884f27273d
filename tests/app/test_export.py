"""Figure export: paper theme applied, every format rendered by kaleido with Debian Chromium."""

from __future__ import annotations

import base64
import shutil

import plotly.graph_objects as go
import pytest

from callbacks.export import export_figure
from components.figures import paper_figure


def _figure() -> dict:
    fig = go.Figure(go.Heatmap(z=[[0.1, 0.9], [0.4, 0.6]], text=[["the", "cat"], ["sat", "on"]], texttemplate="%{text}"))
    fig.update_layout(template="glassbox", paper_bgcolor="#f0f0f0", updatemenus=[{"buttons": []}])
    return fig.to_dict()


def test_paper_theme_is_white_serif_without_chrome():
    paper = paper_figure(_figure())
    assert paper.layout.paper_bgcolor == "white" and paper.layout.plot_bgcolor == "white"
    assert "serif" in paper.layout.font.family
    assert len(paper.layout.updatemenus) == 0


@pytest.mark.skipif(shutil.which("chromium") is None, reason="kaleido needs Chromium")
@pytest.mark.parametrize("fmt,magic", [("svg", b"<svg"), ("pdf", b"%PDF"), ("png", b"\x89PNG")])
def test_export_callback_renders_each_format(fmt, magic):
    result = export_figure({"figure": _figure(), "fmt": fmt, "filename": "grid", "width": 500, "height": 300})
    assert result["filename"] == f"grid.{fmt}"
    data = base64.b64decode(result["content"]) if result.get("base64") else result["content"].encode()
    assert data.startswith(magic)
    if fmt == "svg":
        assert b"cat" in data and b"serif" in data
