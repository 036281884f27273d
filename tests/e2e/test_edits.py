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
    page.wait_for_selector("#shell-edits-feedback", state="visible")
    assert "outside 0..29" in page.inner_text("#shell-edits-feedback")
    assert "Edit effect" in (page.text_content("#lens-grid .gtitle") or "")
    page.fill("#shell-edits", "feature[embedded]:F3=oops")
    page.press("#shell-edits", "Enter")
    page.wait_for_function(has_text("#shell-edits-feedback", "not an edit"))
    page.click("#shell-edits-clear")
    page.wait_for_function(has_text("#shell-edits-status", "no edits"))
    page.wait_for_function("!window.location.search.includes('edits=')")
    assert page.js_errors == []


def test_token_to_feature_to_ablation_on_every_page(page, server_url, runtime, smollm2):
    """Issue 15's walk: a token on Tokens -> features here -> open one -> ablate it -> Tokens, Lens, Features
    and Neurons show before | after."""
    from tests.helpers import ensure_index

    sample = _sample(runtime)
    page.goto(f"{server_url}/tokens?sample={sample}")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=180_000)
    page.locator("#tokens-strips .gb-tok").nth(6).click()
    page.wait_for_selector("#tokens-features-here a.gb-unit-link", timeout=120_000)
    assert page.locator("#tokens-neurons-here a.gb-unit-link").count() == 8
    lens_href = page.get_attribute("#tokens-open-lens", "href") or ""
    assert "focus=6" in lens_href and "sample=" in lens_href
    first = page.locator("#tokens-features-here a.gb-unit-link").first
    feature = (first.inner_text().split()[0]).lstrip("F")
    screenshot(page, "tokens-focus")
    first.click()
    page.wait_for_function(f"document.querySelector('#features-feature') && "
                           f"document.querySelector('#features-feature').value === '{feature}'", timeout=60_000)
    page.click("#features-ablate")
    page.wait_for_function(has_text("#shell-edits-status", f"feature[embedded]:F{feature}"), timeout=60_000)
    page.wait_for_selector("#features-edit-line", timeout=120_000)
    assert "clean →" in page.inner_text("#features-edit-line").replace(" edited", " →") or \
        "edited" in page.inner_text("#features-edit-line")
    screenshot(page, "features-ablated")

    page.goto(f"{server_url}/tokens?sample={sample}")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=180_000)
    page.locator("#tokens-strips .gb-tok").nth(6).click()
    page.wait_for_selector("#tokens-predictions-edited", timeout=120_000)
    assert "KL(clean ‖ edited) here" in page.inner_text("#tokens-edit-effect")
    screenshot(page, "tokens-ablated")

    page.goto(server_url + lens_href + "&view=edit")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                           "document.querySelector('#lens-grid .gtitle').textContent.includes('Edit effect')",
                           timeout=180_000)
    assert page.locator("#lens-grid path[style*='rgb(13, 71, 161)'], #lens-grid .shapelayer path").count() >= 1
    screenshot(page, "lens-ablated")

    ensure_index(runtime)
    page.goto(f"{server_url}/neurons?model=embedded%3Asmollm2-135m-instruct&layer=3&neuron=5")
    page.wait_for_selector("#neurons-snippet-list .gb-snippet", timeout=120_000)
    enter_text = "The cat sat on the mat and purred."
    page.fill("#neurons-try-text", enter_text)
    page.press("#neurons-try-text", "Enter")
    page.wait_for_selector("#neurons-try-edited .gb-tok", timeout=60_000)
    assert "clean: max" in page.inner_text("#neurons-try-result")
    assert "edited: max" in page.inner_text("#neurons-try-result")
    screenshot(page, "neurons-ablated")
    assert page.js_errors == []


def test_generate_tab_continues_clean_and_edited_and_describes_the_state(page, server_url, runtime, smollm2):
    sample = _sample(runtime)
    page.goto(f"{server_url}/tokens?sample={sample}&tab=generate&layer=6&edits={EDITS}")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=180_000)
    page.locator("#tokens-strips .gb-tok").nth(6).click()
    page.wait_for_selector("#tokens-gen-box:not([style*='none'])")
    page.fill("#tokens-gen-new", "8")
    page.click("#tokens-gen-run")
    page.wait_for_selector("#tokens-gen-edited", timeout=120_000)
    assert page.inner_text("#tokens-gen-clean").strip() and page.inner_text("#tokens-gen-edited").strip()
    assert "greedy" in page.inner_text("#tokens-gen-out") and EDITS in page.inner_text("#tokens-gen-out")
    page.click("#tokens-describe-run")
    page.wait_for_selector("#tokens-describe-text", timeout=120_000)
    assert "L6 at" in page.inner_text("#tokens-describe-out")
    page.fill("#tokens-gen-new", "500")
    page.click("#tokens-gen-run")
    page.wait_for_selector("#tokens-gen-new.is-invalid")
    page.wait_for_selector("#tokens-gen-new-feedback", state="visible")
    assert "from 1 to 64" in page.inner_text("#tokens-gen-new-feedback")
    screenshot(page, "tokens-generate")
    assert page.js_errors == []


def test_lens_cell_opens_tokens_at_that_layer_and_position(page, server_url, runtime, smollm2):
    sample = _sample(runtime)
    page.goto(f"{server_url}/lens?sample={sample}&view=logit&width=8&start=4")
    page.wait_for_selector("#lens-grid .heatmaplayer", timeout=180_000)
    box = page.locator("#lens-grid .nsewdrag").first.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * (2.5 / 8), box["y"] + box["height"] * 0.5)  # column 2, a middle row
    page.wait_for_url("**/tokens?**", timeout=60_000)
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    assert "t=6" in page.url and "site=hook_resid_pre" in page.url
    layer = int(page.input_value("#tokens-layer"))
    assert 10 <= layer <= 20  # the row clicked (31 rows, the middle one)
    page.wait_for_selector('#tokens-strips .gb-tok.gb-tok-sel[data-i="6"]')
