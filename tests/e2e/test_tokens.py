"""Tokens page in headless Chromium: open, click a token, change the layer with an arrow key."""

from __future__ import annotations

from tests.e2e.conftest import screenshot


def _short_sample(runtime) -> str:
    """A prose sample of a few hundred characters (a quick forward on two CPU cores)."""
    for sample in runtime.samples.list("prose"):
        if 400 < len(sample.text) < 900:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def _legend(page) -> str:
    return page.inner_text("#tokens-legend")


def test_tokens_select_token_and_change_layer(page, server_url, runtime):
    sample = _short_sample(runtime)
    page.goto(f"{server_url}/tokens?sample={sample}&tool=attention&layer=2&head=3&mul=8&dim=100&hl=42")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    # painted: chips got a colour and a tooltip with index and value
    page.wait_for_function("document.querySelector('#tokens-strips .gb-tok[data-i=\"0\"]').title.includes('attention')")
    n_tokens = page.locator("#tokens-strips .gb-tok").count()
    assert n_tokens > 20

    chip = page.locator('#tokens-strips .gb-tok[data-i="12"]')
    chip.click()
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('token 12')")
    assert "gb-tok-sel" in chip.get_attribute("class")
    assert "L2 head 3" in _legend(page)
    title_before = page.locator('#tokens-strips .gb-tok[data-i="5"]').get_attribute("title")
    assert title_before.startswith("#5 · attention from token 12, L2 head 3")

    page.keyboard.press("ArrowUp")  # global shortcut: next layer
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('L3 head 3')")
    assert page.input_value("#tokens-layer") == "3"
    page.wait_for_function("location.search.includes('layer=3') && location.search.includes('t=12')")
    title_after = page.locator('#tokens-strips .gb-tok[data-i="5"]').get_attribute("title")
    assert title_after.startswith("#5 · attention from token 12, L3 head 3") and title_after != title_before

    page.keyboard.press("ArrowRight")  # next token
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('token 13')")

    page.click("#tokens-tabs >> text=Selected token")
    page.wait_for_selector("#tokens-predictions")
    assert "Top-5 next-token predictions" in page.inner_text("#tokens-panel")
    page.click("#tokens-tabs >> text=Histogram")
    page.wait_for_selector("#tokens-hist .main-svg")
    assert "outlier" in page.inner_text("#tokens-panel")
    screenshot(page, "tokens-histogram")
    page.click("#tokens-tabs >> text=Scatter")
    page.wait_for_selector("#tokens-scatter .main-svg")
    screenshot(page, "tokens-scatter")
    page.click("#tokens-tabs >> text=Selected token")
    page.wait_for_selector("#tokens-predictions")
    with page.expect_download() as info:  # one click -> the selected token's vector
        page.click("#tokens-dl-npy")
    download = info.value
    assert download.suggested_filename == "hook_resid_post_L3_s0_t13.npy"
    import numpy as np

    assert np.load(download.path()).shape == (576,)
    page.locator("h4").click()  # focus out of any input, then the '2' shortcut picks the loss tool
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('cross-entropy')")
    assert page.locator("#tokens-tool input[value='loss']").is_checked()
    screenshot(page, "tokens")
    assert page.js_errors == []


def test_tokens_bad_text_shows_message(page, server_url):
    page.goto(f"{server_url}/tokens?sample=user")
    page.wait_for_selector("#tokens-error.show, #tokens-error >> text=empty", timeout=60_000)
    assert "The text is empty" in page.inner_text("#tokens-error")
    page.fill("#tokens-text", "Hello world, this is a short text.")
    page.locator("#tokens-text").blur()
    page.wait_for_selector("#tokens-strips .gb-tok")
    assert page.locator("#tokens-strips .gb-tok").count() >= 8
    assert page.js_errors == []
