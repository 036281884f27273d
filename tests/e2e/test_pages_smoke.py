"""Smoke test of every page in Chromium: open it, use its main control, check something real is drawn,
no JavaScript errors, and a screenshot (``<page>-smoke.png``, so the page owners' own shots stay)."""

from __future__ import annotations

from analysis.settings import EMBEDDED_LM
from tests.e2e.conftest import screenshot


def _sample(runtime) -> str:
    for sample in runtime.samples.list("prose"):
        if 300 < len(sample.text) < 700:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def _n(page, selector: str) -> int:
    return page.locator(selector).count()


def test_every_page_draws_after_its_main_control(page, server_url, runtime, smollm2, tmp_path):
    from tests.helpers import ensure_index, make_sae

    # Home: status table of the machine and the models
    page.goto(server_url + "/")
    page.wait_for_selector("#home-status table.gb-models")
    assert "cpu" in page.inner_text("#home-status")
    screenshot(page, "home-smoke")

    # Tokens: click a token -> attention from it painted on the strip
    page.goto(f"{server_url}/tokens?sample={_sample(runtime)}&tool=attention&layer=1&head=0")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    page.locator('#tokens-strips .gb-tok[data-i="6"]').click()
    page.wait_for_function("document.querySelector('#tokens-strips .gb-tok[data-i=\"2\"]').title"
                           ".includes('attention from token 6')")
    assert _n(page, "#tokens-strips .gb-tok") > 20
    screenshot(page, "tokens-smoke")

    # Lens: change the statistic -> grid redrawn with cells
    page.goto(f"{server_url}/lens?sample={_sample(runtime)}&width=16")
    page.wait_for_selector("#lens-grid .gtitle", timeout=180_000)
    page.click("#lens-stat")
    page.click("text=Rank of the true next token")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle').textContent.includes('Rank')", timeout=120_000)
    assert _n(page, "#lens-grid .heatmaplayer image, #lens-grid .heatmaplayer .hm") >= 1
    assert _n(page, "#lens-summary .scatterlayer .trace") >= 1
    screenshot(page, "lens-smoke")

    # Regions: run the extraction -> one heatmap per category and the graph
    page.goto(f"{server_url}/regions?n=6&layer=4")
    page.wait_for_selector("#regions-dataset-info strong")  # the extraction starts by itself
    page.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=180_000)
    page.wait_for_selector("#regions-graph .scatterlayer .trace", timeout=60_000)
    assert _n(page, "#regions-heatmap .heatmaplayer .hm") == 3
    screenshot(page, "regions-smoke")

    # Features: pick another feature -> its activations on the text and its logit effects
    sae = make_sae(tmp_path / "sae", seed=6)
    page.goto(f"{server_url}/features?sample={_sample(runtime)}&sae={sae}&feature=1")
    page.wait_for_selector("#features-strip .gb-ftok", timeout=120_000)
    page.fill("#features-feature", "20")
    page.press("#features-feature", "Enter")
    page.wait_for_function("document.querySelector('#features-strip').innerText.includes('Feature 20 on this text')")
    page.wait_for_function("document.querySelector('#features-logits .gtitle') && "
                           "document.querySelector('#features-logits .gtitle').textContent.includes('feature 20')")
    assert _n(page, "#features-logits .bars path") >= 10
    screenshot(page, "features-smoke")

    # Neurons: pick a neuron -> snippets, quantiles, logit effects
    ensure_index(runtime)
    page.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=2&neuron=0")
    page.wait_for_selector("#neurons-snippet-list .gb-snippet")
    page.fill("#neurons-neuron", "7")
    page.press("#neurons-neuron", "Enter")
    page.wait_for_function("document.querySelector('#neurons-title').innerText.includes('neuron 7')")
    page.wait_for_selector("#neurons-snippet-list .gb-snippet")
    page.wait_for_selector("#neurons-logits .bars path")
    assert _n(page, "#neurons-quantiles .scatterlayer .trace") == 1
    screenshot(page, "neurons-smoke")

    assert page.js_errors == []
    for alert in ("#tokens-error", "#lens-error", "#regions-error", "#features-error", "#neurons-error"):
        assert _n(page, alert) == 0 or not page.locator(alert).is_visible()
