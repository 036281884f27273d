"""Features page in headless Chromium: open /features, see a feature's dashboard, switch feature."""

from __future__ import annotations

from urllib.parse import urlencode

from analysis.features.records import text_activations
from analysis.features.sae import embedded_sae_exists, load_sae
from analysis.features.scan import DEFAULT_TOKENS, cached_scan, get_scan
from analysis.settings import EMBEDDED_LM
from tests.e2e.conftest import screenshot
from tests.helpers import make_sae


def _short_sample(runtime) -> str:
    for sample in runtime.samples.list("prose"):
        if 500 < len(sample.text) < 1100:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def _sae_and_scan(runtime, tmp_path) -> tuple[str, int]:
    """The trained embedded SAE when it exists (its default scan when cached, else a small one), otherwise
    a random sae-lens SAE with a small scan computed here (CI never depends on ``make sae``)."""
    cache = runtime.settings.cache_dir
    if embedded_sae_exists(cache):
        sae = load_sae(runtime, "embedded", EMBEDDED_LM)
        if cached_scan(runtime, EMBEDDED_LM, sae, DEFAULT_TOKENS) is not None:
            return "embedded", DEFAULT_TOKENS
        get_scan(runtime, EMBEDDED_LM, sae, 4000)
        return "embedded", 4000
    ref = make_sae(tmp_path / "sae", seed=2)
    get_scan(runtime, EMBEDDED_LM, load_sae(runtime, ref, EMBEDDED_LM), 1000)
    return ref, 1000


def test_features_dashboard(page, server_url, runtime, tmp_path):
    sample = _short_sample(runtime)
    ref, scan_tokens = _sae_and_scan(runtime, tmp_path)
    sae = load_sae(runtime, ref, EMBEDDED_LM)
    acts = text_activations(runtime, EMBEDDED_LM, sae, runtime.samples.get(sample).text)
    # the strongest feature on this text, ignoring the first token (often an attention-sink feature)
    best = acts.feats[1:].max(0).values.argmax().item()
    query = urlencode({"sample": sample, "sae": ref, "feature": best, "scan": scan_tokens})
    page.goto(f"{server_url}/features?{query}")
    page.wait_for_selector("#features-strip .gb-ftok", timeout=120_000)
    assert f"Feature {best} on this text" in page.inner_text("#features-strip")
    assert page.locator("#features-strip .gb-ftok").count() == len(acts.tokens)
    page.wait_for_selector("#features-top-examples .gb-fsnippet")
    assert page.locator("#features-top-examples .gb-fsnippet").count() >= 3
    page.wait_for_selector("#features-logits .main-svg")
    assert "Logit effects" in page.inner_text("#features-logits")
    assert "blocks.15.hook_resid_post" in page.inner_text("#features-sae-info")
    assert "Density" in page.inner_text("#features-density")
    assert f"feature={best}" in page.url
    screenshot(page, "features")

    # click another strong feature's badge: the dashboard follows, the URL too
    badges = page.locator("#features-badges button")
    other = next(b for b in badges.all_inner_texts() if not b.startswith(f"{best} "))
    other_feature = int(other.split(" ")[0])
    page.click(f"#features-badges button >> text={other}")
    page.wait_for_function(
        f"document.querySelector('#features-strip').innerText.includes('Feature {other_feature} on this text')")
    page.wait_for_function(f"window.location.search.includes('feature={other_feature}')")

    page.click("#features-tab >> text=Token lists")
    page.click("#features-tokens-run")
    page.wait_for_selector("#features-token-table tbody tr")
    assert page.locator("#features-token-table tbody tr").count() == 100
    assert page.js_errors == []


def test_features_definition_tree_and_steering(page, server_url, runtime, tmp_path):
    """The tree runs as a background job; the trim slider redraws it; steering shows both columns."""
    ref = make_sae(tmp_path / "sae-tree", seed=3)
    query = urlencode({"sample": _short_sample(runtime), "sae": ref, "feature": 5, "tab": "tree", "scan": 1000})
    page.goto(f"{server_url}/features?{query}")
    page.wait_for_selector("#features-strip .gb-ftok", state="attached", timeout=120_000)  # tab hidden
    page.fill("#features-depth", "3")
    page.fill("#features-topk", "3")
    page.fill("#features-cutoff", "0.001")
    page.press("#features-cutoff", "Enter")
    page.click("#features-tree-start")
    page.wait_for_function("document.querySelector('#features-tree-msg').innerText.includes('nodes in')",
                           timeout=180_000)
    page.wait_for_selector("#features-definitions li")
    page.wait_for_selector("#features-tree .main-svg .textpoint")
    screenshot(page, "features-tree")

    page.click("#features-tab >> text=Steering")
    page.fill("#features-steer-n", "4")
    page.press("#features-steer-n", "Enter")
    page.click("#features-steer-run")
    page.wait_for_selector("#features-steered", timeout=120_000)
    assert page.locator("#features-unsteered").count() == 1
    assert page.js_errors == []
