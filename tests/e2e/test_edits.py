"""The shared edit list in Chromium: set once (URL or the Edits bar), understood by Tokens and Lens, kept
across pages in the session and in the URL, reproduced by a link in a fresh browser, bad edits marked."""

from __future__ import annotations

from tests.e2e.conftest import screenshot

EDITS = "neuron:L5.N10=20"


def has_text(selector: str, words: str) -> str:
    """A wait_for_function predicate that holds once ``selector`` exists and shows ``words``."""
    return f"(document.querySelector('{selector}') || {{innerText: ''}}).innerText.includes('{words}')"


def _sample(runtime) -> str:
    for sample in runtime.samples.list("prose"):
        if 300 < len(sample.text) < 900:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def test_edits_follow_the_researcher_across_pages_and_links(page, browser, server_url, runtime, smollm2):
    sample = _sample(runtime)
    page.goto(f"{server_url}/tokens?sample={sample}&edits={EDITS}")
    page.wait_for_function(has_text("#shell-edits-status", "1 edit on"), timeout=60_000)
    assert page.input_value("#shell-edits") == EDITS
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=180_000)
    page.locator("#tokens-strips .gb-tok").nth(6).click()
    page.wait_for_selector("#tokens-predictions-edited", timeout=120_000)
    assert "KL(clean ‖ edited) here" in page.inner_text("#tokens-edit-effect")
    assert "Clean" in page.inner_text("#tokens-panel") and "Edited" in page.inner_text("#tokens-panel")
    page.click("#tokens-tool >> text=Edit effect")
    page.wait_for_function(has_text("#tokens-legend", "KL(clean"), timeout=60_000)
    screenshot(page, "tokens-edited")
    assert "edits=" in page.url

    # another page in the same session: the edit list is still on, without retyping it
    page.goto(f"{server_url}/lens?sample={sample}&view=edit&width=24")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                           "document.querySelector('#lens-grid .gtitle').textContent.includes('Edit effect')",
                           timeout=180_000)
    page.wait_for_function("window.location.search.includes('edits=')")
    link = page.url
    screenshot(page, "lens-edited")

    # the link in a fresh browser (no session): the same edited view
    fresh = browser.new_context(viewport={"width": 1440, "height": 960})
    try:
        tab = fresh.new_page()
        tab.goto(link)
        tab.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                              "document.querySelector('#lens-grid .gtitle').textContent.includes('Edit effect')",
                              timeout=180_000)
        assert "neuron:L5.N10=20" in tab.inner_text("#lens-note")
    finally:
        fresh.close()

    # a bad edit is marked on the edit box with its bound; the grid stays
    page.fill("#shell-edits", "neuron:L40.N1")
    page.press("#shell-edits", "Enter")
    page.wait_for_selector("#shell-edits.is-invalid", timeout=60_000)
    assert "outside 0..29" in page.inner_text("#shell-edits-feedback")
    assert "Edit effect" in (page.text_content("#lens-grid .gtitle") or "")
    page.fill("#shell-edits", "feature[embedded]:F3=oops")
    page.press("#shell-edits", "Enter")
    page.wait_for_function(has_text("#shell-edits-feedback", "not an edit"))
    page.click("#shell-edits-clear")
    page.wait_for_function(has_text("#shell-edits-status", "no edits"))
    page.wait_for_function("!window.location.search.includes('edits=')")
    assert page.js_errors == []
