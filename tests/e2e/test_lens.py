"""Lens page in headless Chromium: open /lens, see the grid, change the statistic."""

from __future__ import annotations

from tests.e2e.conftest import screenshot


def _sample(runtime) -> str:
    for sample in runtime.samples.list("prose"):
        if 300 < len(sample.text) < 700:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def _title(page) -> str:
    return page.evaluate("document.querySelector('#lens-grid .gtitle') ? "
                         "document.querySelector('#lens-grid .gtitle').textContent : ''")


def test_lens_grid_and_statistic_change(page, server_url, runtime):
    page.goto(f"{server_url}/lens?sample={_sample(runtime)}&stat=kl_final&width=24")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                           "document.querySelector('#lens-grid .gtitle').textContent.includes('KL to final')",
                           timeout=180_000)
    # cells carry the top-1 tokens; rows go from the embedding to the output
    cells = page.locator("#lens-grid .heatmaplayer text, #lens-grid text.textpoint, #lens-grid g.textpoint text")
    texts = page.evaluate("Array.from(document.querySelectorAll('#lens-grid text')).map(t => t.textContent)")
    assert "embed" in texts and "output" in texts
    assert len(texts) > 24 * 31 // 2 or cells.count() > 0
    assert "positions 0–23" in page.inner_text("#lens-note")
    page.wait_for_selector("#lens-summary .scatterlayer .trace")

    page.click("#lens-stat")
    page.click("text=Top-token probability")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle').textContent.includes('Top-token probability')",
                           timeout=60_000)
    page.wait_for_function("location.search.includes('stat=max_prob')")
    assert page.locator("#lens-error").count() == 0 or not page.locator("#lens-error").is_visible()
    screenshot(page, "lens")
    assert page.js_errors == []
