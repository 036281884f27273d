"""Reproducible views: set state through each page's UI, copy the URL, open it in a NEW browser context
(no shared storage) and check the same view is restored and drawn the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

from analysis.settings import EMBEDDED_LM


def _sample(runtime, low: int = 300, high: int = 700) -> str:
    for sample in runtime.samples.list("prose"):
        if low < len(sample.text) < high:
            return sample.sample_id
    return runtime.samples.default_sample_id()


@contextmanager
def fresh_tab(browser) -> Iterator:
    """A tab in a new context (fresh cookies/storage), recording JS errors like the ``page`` fixture."""
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _reopen(browser, url: str, wait: Callable, signature: Callable) -> tuple[str, list[str]]:
    with fresh_tab(browser) as tab:
        tab.goto(url)
        wait(tab)
        return signature(tab), tab.js_errors


def _texts(tab, selector: str) -> str:
    return tab.evaluate(f"Array.from(document.querySelectorAll({selector!r})).map(e => e.textContent).join('|')")


def test_tokens_link_restores_token_layer_head(page, browser, server_url, runtime):
    page.goto(f"{server_url}/tokens?sample={_sample(runtime)}&tool=attention&layer=2&head=3")
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    page.locator('#tokens-strips .gb-tok[data-i="9"]').click()
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('token 9')")
    page.keyboard.press("ArrowUp")  # next layer
    page.wait_for_function("location.search.includes('layer=3') && location.search.includes('t=9')")
    page.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('L3 head 3')")
    q = _query(page.url)
    assert (q["tool"], q["layer"], q["head"], q["t"]) == ("attention", "3", "3", "9")

    def wait(tab):
        tab.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
        tab.wait_for_function("document.querySelector('#tokens-legend').innerText.includes('token 9') && "
                              "document.querySelector('#tokens-legend').innerText.includes('L3 head 3')")

    def signature(tab):
        assert tab.input_value("#tokens-layer") == "3" and tab.input_value("#tokens-head") == "3"
        assert "gb-tok-sel" in tab.locator('#tokens-strips .gb-tok[data-i="9"]').get_attribute("class")
        return tab.locator('#tokens-strips .gb-tok[data-i="4"]').get_attribute("title")

    before = signature(page)
    after, errors = _reopen(page.context.browser, page.url, wait, signature)
    assert after == before and "attention from token 9, L3 head 3" in after
    assert errors == [] and page.js_errors == []


def test_lens_link_restores_statistic_and_window(page, server_url, runtime):
    page.goto(f"{server_url}/lens?sample={_sample(runtime)}&width=16")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                           "document.querySelector('#lens-grid .gtitle').textContent.includes('KL to final')",
                           timeout=180_000)
    page.click("#lens-stat")
    page.click("text=Entropy (nats)")
    page.fill("#lens-width", "12")
    page.press("#lens-width", "Enter")
    page.wait_for_function("location.search.includes('stat=entropy') && location.search.includes('width=12')")
    page.wait_for_function("document.querySelector('#lens-note').innerText.includes('positions 0–11')")
    page.wait_for_function("document.querySelector('#lens-grid .gtitle').textContent.includes('Entropy')")

    def wait(tab):
        tab.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                              "document.querySelector('#lens-grid .gtitle').textContent.includes('Entropy') && "
                              "document.querySelector('#lens-note').innerText.includes('positions 0–11')",
                              timeout=180_000)

    def signature(tab):
        assert tab.input_value("#lens-width") == "12"
        return _texts(tab, "#lens-grid .gtitle") + "#" + _texts(tab, "#lens-grid .xtick text")

    before = signature(page)
    after, errors = _reopen(page.context.browser, page.url, wait, signature)
    assert after == before and errors == []


def test_regions_link_restores_reduction_and_layer(page, server_url):
    page.goto(f"{server_url}/regions?n=6&layer=2")
    page.wait_for_selector("#regions-dataset-info strong")
    page.click("text=mean over real tokens")  # (SVD of first-token [CLS] vectors fails: see test_robustness)
    page.fill("#regions-grid", "8")
    page.press("#regions-grid", "Enter")
    page.click("#regions-method")
    page.click("text=SVD")
    page.wait_for_function("location.search.includes('method=svd') && location.search.includes('grid=8') "
                           "&& location.search.includes('layer=2') && location.search.includes('pooling=mean')")

    def wait(tab):
        tab.wait_for_selector("#regions-dataset-info strong")
        tab.wait_for_function("document.querySelector('#regions-heatmap .gtitle') && "
                              "document.querySelector('#regions-heatmap .gtitle').textContent.includes('Regions of L2')",
                              timeout=180_000)

    def signature(tab):
        assert tab.input_value("#regions-grid") == "8" and "SVD" in tab.inner_text("#regions-method")
        assert "mean over real tokens" in tab.evaluate(
            "document.querySelector('#regions-pooling input:checked').parentElement.innerText")
        return _texts(tab, "#regions-heatmap .gtitle") + "#" + _texts(tab, "#regions-heatmap .xtick text")

    wait(page)
    before = signature(page)
    assert "7" in before and "8" not in before.split("#")[1].split("|")  # 8 bins: 0..7
    after, errors = _reopen(page.context.browser, page.url, wait, signature)
    assert after == before and errors == []


def test_features_link_restores_feature(page, server_url, runtime, tmp_path):
    from tests.helpers import make_sae

    sae = make_sae(tmp_path / "sae", seed=4)
    page.goto(f"{server_url}/features?sample={_sample(runtime)}&sae={sae}&feature=4")
    page.wait_for_function("document.querySelector('#features-strip') && "
                           "document.querySelector('#features-strip').innerText.includes('Feature 4 on this text')",
                           timeout=120_000)
    page.fill("#features-feature", "11")
    page.press("#features-feature", "Enter")
    page.wait_for_function("location.search.includes('feature=11')")

    def wait(tab):
        tab.wait_for_function("document.querySelector('#features-strip') && "
                              "document.querySelector('#features-strip').innerText.includes('Feature 11 on this text')"
                              " && document.querySelector('#features-logits .gtitle') && "
                              "document.querySelector('#features-logits .gtitle').textContent.includes('feature 11')",
                              timeout=120_000)

    def signature(tab):
        return tab.inner_text("#features-strip") + "#" + _texts(tab, "#features-logits .ytick text")

    wait(page)
    before = signature(page)
    after, errors = _reopen(page.context.browser, page.url, wait, signature)
    assert after == before and errors == []


def test_neurons_link_restores_layer_and_neuron(page, server_url, runtime, smollm2):
    from tests.helpers import ensure_index

    ensure_index(runtime)
    page.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=3&neuron=0")
    page.wait_for_function("document.querySelector('#neurons-title') && "
                           "document.querySelector('#neurons-title').innerText.includes('neuron 0')")
    page.fill("#neurons-neuron", "5")
    page.press("#neurons-neuron", "Enter")
    page.wait_for_function("location.search.includes('neuron=5') && location.search.includes('layer=3')")

    def wait(tab):
        tab.wait_for_function("document.querySelector('#neurons-title') && "
                              "document.querySelector('#neurons-title').innerText.includes('Layer 3 · neuron 5')")
        tab.wait_for_selector("#neurons-snippet-list .gb-snippet")

    def signature(tab):
        return tab.inner_text("#neurons-snippet-list") + "#" + tab.inner_text("#neurons-stats")

    wait(page)
    before = signature(page)
    after, errors = _reopen(page.context.browser, page.url, wait, signature)
    assert after == before and errors == []
