"""Regions in Chromium: built-in dataset (small), background extraction with progress, heatmaps, graph."""

from __future__ import annotations

from tests.e2e.conftest import screenshot


def test_regions_extract_heatmap_graph(page, server_url):
    page.goto(server_url + "/regions?n=8&layer=3")
    page.wait_for_selector("#regions-dataset-info strong")
    assert "24 texts" in page.inner_text("#regions-dataset-info")
    # the extraction starts by itself (a server job with a progress bar) when the dataset is loaded
    page.wait_for_function("document.querySelector('#regions-extract-msg') && "
                           "document.querySelector('#regions-extract-msg').innerText.includes('residual states')",
                           timeout=120_000)
    page.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=60_000)
    page.wait_for_selector("#regions-graph .scatterlayer .trace", timeout=60_000)
    assert page.locator("#regions-heatmap .heatmaplayer .hm").count() == 3  # prose, code, scripture
    legend = page.locator("#regions-graph .legend").first.text_content() or ""
    assert "prose" in legend and "code" in legend
    assert page.locator("#regions-metrics-table").count() == 1
    assert "layer=3" in page.url and "pooling=first" in page.url
    page.click("#regions-eval-run")
    page.wait_for_selector("#regions-eval-table", timeout=60_000)
    page.wait_for_timeout(800)
    screenshot(page, "regions")
    assert page.js_errors == []
