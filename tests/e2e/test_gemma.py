"""Every page on the embedded Gemma 3 270M in Chromium: one smoke test per page, with screenshots
(``<page>-gemma.png``). Short texts keep the 262k-token unembedding quick."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from analysis.settings import EMBEDDED_GEMMA
from tests.e2e.conftest import screenshot

TEXT = ("The committee met on Tuesday to discuss the budget. After a long debate, the members agreed to fund "
        "the new library, and the mayor thanked everyone for their patience.")


@pytest.fixture(scope="module")
def gemma_index(runtime, gemma):
    from analysis.neurons import index_path
    from analysis.neurons.index import build_command
    from tests.helpers import index_config

    args = ["build", "--model", EMBEDDED_GEMMA, "--corpus", "prose", "--tokens", "256", "--seq-len", "32",
            "--top-k", "4", "--batch-size", "4", "--layers", "0-1"]
    assert build_command(args) == 0
    config = index_config()
    config.model_id, config.n_tokens, config.seq_len, config.top_k, config.layers = EMBEDDED_GEMMA, 256, 32, 4, [0, 1]
    path = index_path(runtime, config)
    assert path.is_file()
    return path


def _url(server_url: str, page: str, **query) -> str:
    return f"{server_url}/{page}?" + urlencode({"model": EMBEDDED_GEMMA, **query})


def test_gemma_tokens(page, server_url, gemma):
    page.goto(_url(server_url, "tokens", sample="user", tool="attention", layer=5, head=0, rope="full"))
    page.fill("#tokens-text", TEXT)
    page.locator("#tokens-text").blur()
    page.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    page.locator('#tokens-strips .gb-tok[data-i="6"]').click()
    page.wait_for_function("document.querySelector('#tokens-strips .gb-tok[data-i=\"2\"]').title"
                           ".includes('attention from token 6')")
    assert page.locator("#tokens-strips .gb-tok").count() > 20
    screenshot(page, "tokens-gemma")
    assert page.js_errors == []


def test_gemma_lens(page, server_url, gemma):
    page.goto(_url(server_url, "lens", sample="user", width=16))
    page.fill("#lens-text", TEXT)
    page.locator("#lens-text").blur()
    page.wait_for_selector("#lens-grid .gtitle", timeout=180_000)
    page.wait_for_function("document.querySelector('#lens-grid .gtitle').textContent.includes('gemma')",
                           timeout=180_000)
    assert page.locator("#lens-grid .heatmaplayer image, #lens-grid .heatmaplayer .hm").count() >= 1
    screenshot(page, "lens-gemma")
    assert page.js_errors == []


def test_gemma_regions(page, server_url, gemma):
    page.goto(_url(server_url, "regions", n=6, layer=9, pooling="last"))
    page.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=240_000)
    page.wait_for_selector("#regions-graph .scatterlayer .trace", timeout=60_000)
    assert page.locator("#regions-heatmap .heatmaplayer .hm").count() == 3
    screenshot(page, "regions-gemma")
    assert page.js_errors == []


def test_gemma_features(page, server_url, gemma, tmp_path):
    from tests.helpers import make_sae

    sae = make_sae(tmp_path / "sae", d_in=640, hook="blocks.9.hook_resid_post", model_name="gemma-3-270m",
                   model_id=EMBEDDED_GEMMA, seed=4)
    page.goto(_url(server_url, "features", sample="user", sae=sae, feature=3, scan=500))
    page.fill("#features-text", TEXT)
    page.locator("#features-text").blur()
    page.wait_for_selector("#features-strip .gb-ftok", timeout=180_000)
    page.wait_for_function("document.querySelector('#features-logits .gtitle') && "
                           "document.querySelector('#features-logits .gtitle').textContent.includes('feature 3')")
    assert "Gemma 3" in page.inner_text("#features-model")  # the picker shows the model the URL named
    screenshot(page, "features-gemma")
    page.click("#features-tab >> text=Token lists")
    page.click("#features-tokens-run")
    page.wait_for_selector("#features-token-table tbody tr", timeout=120_000)
    assert page.locator("#features-token-table tbody tr").count() == 100
    page.click("#features-tab >> text=Steering")
    page.fill("#features-steer-n", "4")
    page.press("#features-steer-n", "Enter")
    page.click("#features-steer-run")
    page.wait_for_selector("#features-steered", timeout=120_000)
    assert page.js_errors == []


def test_gemma_neurons(page, server_url, gemma, gemma_index):
    page.goto(_url(server_url, "neurons", layer=1, neuron=0))
    page.wait_for_selector("#neurons-snippet-list .gb-snippet", timeout=60_000)
    page.fill("#neurons-neuron", "7")
    page.press("#neurons-neuron", "Enter")
    page.wait_for_function("document.querySelector('#neurons-title').innerText.includes('neuron 7')")
    page.wait_for_selector("#neurons-logits .bars path")
    screenshot(page, "neurons-gemma")
    assert page.js_errors == []
