"""Neurons page in a real browser: a neuron's snippets, the pattern graph, search and the API docs page."""

from __future__ import annotations

from analysis.settings import EMBEDDED_LM
from tests.e2e.conftest import screenshot
from tests.helpers import ensure_index


def test_neurons_page_shows_snippets(page, server_url, runtime, smollm2):
    from analysis.neurons.index import open_index

    ensure_index(runtime)
    index = open_index(runtime, EMBEDDED_LM, None)
    layer = 3 if 3 in [g.layer for g in index.groups] else index.groups[0].layer
    best = index.ranked(layer, "max", 1)[0]["unit"]
    record = index.unit(layer, best)
    page.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer={layer}&neuron={best}")
    page.wait_for_selector("#neurons-snippet-list .gb-snippet")
    rows = page.locator("#neurons-snippet-list .gb-snippet")
    assert rows.count() == len(record.snippets)
    first = rows.nth(0).inner_text()
    assert f"{record.snippets[0].act:.2f}" in first
    assert page.locator("#neurons-snippet-list .gb-tok-max").count() == len(record.snippets)
    assert f"Layer {layer}" in page.inner_text("#neurons-title")
    page.wait_for_selector("#neurons-similar-table a")
    page.wait_for_selector("#neurons-graph .scatterlayer .trace", timeout=120_000)
    page.wait_for_selector("#neurons-patterns li", timeout=120_000)
    assert "neuron=" in page.url and f"layer={layer}" in page.url
    screenshot(page, "neurons")
    # whole-sample toggle shows full rows (longer than the windows)
    before = len(page.inner_text("#neurons-snippet-list"))
    page.click("#neurons-whole")
    page.wait_for_function(f"document.querySelector('#neurons-snippet-list') && "
                           f"document.querySelector('#neurons-snippet-list').innerText.length > {before}")
    # token search tab
    page.click("text=Search by token")
    page.fill("#neurons-search", "the")
    page.click("#neurons-search-button")
    page.wait_for_selector("#neurons-search-results table, #neurons-search-results .text-muted")
    assert page.js_errors == []


def test_api_docs_page_renders_offline(page, server_url):
    page.goto(f"{server_url}/api/v1/docs")
    page.wait_for_selector(".card .path")
    assert "/api/v1/neuron" in page.inner_text("#routes")
    assert page.locator(".card").count() >= 10
    assert page.js_errors == []
