"""A researcher's first hour (issue 18), item by item, in headless Chromium at 1440x900: every control honest
(bad values marked in place, naming the bound, the last good figure kept), every wait explained, offline
lookups answered at once, state current after every action, the layout and defaults that show something."""

from __future__ import annotations

import pytest

from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM
from tests.e2e.conftest import screenshot
from tests.helpers import ensure_index

VIEW = {"width": 1440, "height": 900}


@pytest.fixture
def tab(page):
    page.set_viewport_size(VIEW)
    return page


def _sample(runtime, low: int = 500, high: int = 1500) -> str:
    for sample in runtime.samples.list("prose"):
        if low < len(sample.text) < high:
            return sample.sample_id
    return runtime.samples.default_sample_id()


def marked(tab, field_id: str) -> str:
    """Wait until ``field_id`` is marked invalid and its in-place message is visible; that message."""
    tab.wait_for_selector(f"#{field_id}.is-invalid", timeout=60_000)
    tab.wait_for_selector(f"#{field_id}-feedback", state="visible", timeout=10_000)  # shown, not only in the DOM
    return tab.inner_text(f"#{field_id}-feedback")


def unmarked(tab, field_id: str) -> None:
    tab.wait_for_selector(f"#{field_id}:not(.is-invalid)", timeout=60_000)


def shown_message(tab, field_id: str, page_name: str, timeout: int = 30_000, field_only: bool = False) -> str:
    """Wait for the field's in-place message (or the page's alert); their text (an unopened alert has no DOM)."""
    alert = "false" if field_only else f"!!document.querySelector('#{page_name}-error.show')"
    tab.wait_for_function(
        f"(document.querySelector('#{field_id}.is-invalid') && document.querySelector('#{field_id}-feedback')"
        f".innerText.length > 0 && document.querySelector('#{field_id}-feedback').offsetParent !== null) || {alert}",
        timeout=timeout)  # offsetParent: the message is shown, not only in the DOM
    return tab.evaluate(f"['{field_id}-feedback', '{page_name}-error']"
                        ".map(id => (document.getElementById(id) || {}).innerText || '').join(' ')")


def enter(tab, field_id: str, value: str) -> None:
    tab.fill(f"#{field_id}", value)
    tab.press(f"#{field_id}", "Enter")


def title(tab, graph_id: str) -> str:
    return tab.text_content(f"#{graph_id} .gtitle") or ""


# ---- 1. inputs validate in place, never a silent wrong value -----------------------------------

def test_lens_width_out_of_range_is_marked_and_the_grid_stays(tab, server_url, runtime):
    tab.goto(f"{server_url}/lens?sample={_sample(runtime)}&width=16")
    tab.wait_for_function("document.querySelector('#lens-grid .gtitle') && "
                          "document.querySelector('#lens-grid .gtitle').textContent.includes('positions 0–15')",
                          timeout=180_000)
    for bad, shown in [("1000", "got 1,000"), ("0", "got 0"), ("-5", "got -5")]:
        enter(tab, "lens-width", bad)
        marked(tab, "lens-width")
        tab.wait_for_function(f"document.querySelector('#lens-width-feedback').innerText.includes('{shown}')")
        message = tab.inner_text("#lens-width-feedback")
        assert "from 1 to 256" in message and shown in message, message
        assert "positions 0–15" in title(tab, "lens-grid")  # the last good grid stays
    assert not tab.locator("#lens-error").is_visible()  # in place, not at the top of the page
    enter(tab, "lens-width", "24")
    unmarked(tab, "lens-width")
    tab.wait_for_function("document.querySelector('#lens-grid .gtitle').textContent.includes('positions 0–23')")
    assert tab.js_errors == []


def test_neurons_build_fields_take_round_numbers_and_name_the_layer_bound(tab, server_url, runtime, smollm2):
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=2&neuron=0")
    tab.click("#neurons-tabs >> text=Index")
    enter(tab, "neurons-build-tokens", "3000")
    tab.fill("#neurons-build-layers", "abc")
    tab.click("#neurons-build-start")
    message = marked(tab, "neurons-build-layers")
    assert "from 0 to 29" in message and "'abc'" in message and "invalid literal" not in message, message
    assert "is-invalid" not in (tab.get_attribute("#neurons-build-tokens", "class") or "")  # 3000 is fine
    enter(tab, "neurons-build-tokens", "5")
    tab.click("#neurons-build-start")
    assert "from 16 to" in marked(tab, "neurons-build-tokens")
    assert tab.js_errors == []


def test_regions_bounds_are_named_beside_their_fields(tab, server_url):
    tab.goto(f"{server_url}/regions?n=6")
    tab.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=180_000)
    before = title(tab, "regions-heatmap")
    enter(tab, "regions-grid", "1")
    assert "from 2 to" in marked(tab, "regions-grid")
    enter(tab, "regions-k", "100")
    message = marked(tab, "regions-k")
    assert "Components must be a whole number from 2 to" in message and "got 100" in message, message
    assert title(tab, "regions-heatmap") == before and tab.locator("#regions-heatmap .heatmaplayer .hm").count() == 3
    enter(tab, "regions-k", "2")
    unmarked(tab, "regions-k")
    assert tab.js_errors == []


def test_tokens_bad_highlight_dim_keeps_the_scatter(tab, server_url, runtime):
    tab.goto(f"{server_url}/tokens?sample={_sample(runtime)}&tab=scatter&tool=sum")
    tab.wait_for_selector("#tokens-scatter .main-svg", timeout=180_000)
    enter(tab, "tokens-highlight", "12, 99999")
    message = marked(tab, "tokens-highlight")
    assert "from 0 to 575" in message and "99,999" in message, message
    assert tab.locator("#tokens-scatter .main-svg").count() >= 1  # the scatter is still there
    enter(tab, "tokens-layer", "99")
    assert "from 0 to 29" in marked(tab, "tokens-layer")
    assert tab.js_errors == []


# ---- 2. every wait says what it is doing -------------------------------------------------------

def test_tokens_says_what_runs_while_it_runs(tab, server_url, runtime, smollm2):
    tab.goto(f"{server_url}/tokens?sample=user")
    tab.wait_for_selector("#tokens-text")
    # ~870 tokens nobody has run here before: long enough that the run line shows while the model runs
    text = " ".join(f"Walrus number {i} sharpened tusk {i * 7} before the tide." for i in range(50))
    n = len(smollm2.tokenizer(text)["input_ids"])
    tab.evaluate("""() => { window.__shown = [];
        new MutationObserver(() => {
            const box = document.getElementById('tokens-loading-box');
            if (box && box.style.display !== 'none') {
                window.__shown.push(document.getElementById('tokens-loading-msg').textContent); }
        }).observe(document.body, {subtree: true, attributes: true, childList: true, characterData: true}); }""")
    tab.fill("#tokens-text", text)
    tab.press("#tokens-text", "Tab")
    tab.wait_for_selector("#tokens-strips .gb-tok")
    tab.wait_for_selector("#tokens-loading-box", state="hidden")  # gone once the strip is there
    shown = tab.evaluate("window.__shown")
    assert any(f"Running smollm2-135m-instruct on {n:,} tokens" in line for line in shown), shown


def test_regions_cancel_says_stopped(tab, server_url):
    tab.goto(f"{server_url}/regions?n=400")  # 1,200 texts: long enough to cancel on any machine
    tab.wait_for_function("document.querySelector('#regions-extract-msg') && "
                          "document.querySelector('#regions-extract-msg').innerText.includes('Extracting')",
                          timeout=120_000)
    tab.click("#regions-extract-cancel")
    tab.wait_for_function("document.querySelector('#regions-extract-msg').innerText.includes('stopped')",
                          timeout=120_000)
    assert "Loading" not in tab.inner_text("#regions-extract-msg")
    assert "cancelled" in tab.inner_text("#regions-extract-progress")
    assert not tab.locator("#regions-extract-cancel").is_enabled()


# ---- 3. offline lookups answer at once ---------------------------------------------------------

@pytest.mark.parametrize("path, field_id, value, words", [
    ("/lens?view=tuned", "lens-source", "/no/such/lens", ["No such folder", "/no/such/lens"]),
    ("/lens?view=logit", "lens-source", "someorg/some-lens", ["offline mode is on"]),
    ("/features", "features-sae", "gpt2-small-res-jb:blocks.8.hook_resid_pre", ["offline mode is on", "sae-lens"]),
])
def test_offline_lookups_are_clear_at_once(tab, server_url, runtime, path, field_id, value, words):
    tab.goto(f"{server_url}{path}&sample={_sample(runtime)}" if "?" in path else f"{server_url}{path}")
    tab.wait_for_selector(f"#{field_id}")
    enter(tab, field_id, value)
    # answered from the offline check itself (its wording), never after a hub timeout (HF's wording)
    shown = shown_message(tab, field_id, path.strip("/").split("?")[0], field_only=True)
    for word in words:
        assert word in shown, shown
    assert "LocalEntryNotFoundError" not in shown and "check your connection" not in shown


def test_regions_hub_dataset_offline(tab, server_url):
    tab.goto(f"{server_url}/regions")
    tab.click("text=HF dataset name (online)")
    tab.fill("#regions-hub", "imdb")
    tab.click("#regions-load")
    shown = shown_message(tab, "regions-hub", "regions")
    assert "offline mode is on" in shown and "imdb" in shown and "LocalEntryNotFoundError" not in shown, shown


# ---- 4. state is current after every action ----------------------------------------------------

def test_regions_failed_upload_keeps_the_loaded_dataset(tab, server_url):
    tab.goto(f"{server_url}/regions?n=6")
    tab.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=180_000)
    info = tab.inner_text("#regions-dataset-info")
    tab.click("text=Upload CSV / JSONL")
    tab.set_input_files("#regions-upload input[type=file]",
                        files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b"sentence,category\nhi,a\n"}])
    tab.wait_for_selector("#regions-error.show", timeout=60_000)
    assert "'text' column" in tab.inner_text("#regions-error")
    assert tab.inner_text("#regions-dataset-info") == info and "No dataset" not in info
    assert tab.locator("#regions-heatmap .heatmaplayer .hm").count() == 3


def test_neurons_picker_follows_the_typed_neuron(tab, server_url, runtime, smollm2):
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=2&neuron=0")
    tab.wait_for_selector("#neurons-snippet-list .gb-snippet")
    tab.click("#neurons-top")
    tab.locator(".dash-dropdown-option").first.click()  # the open menu's options
    tab.wait_for_function("document.querySelector('#neurons-neuron').value !== '0'")
    picked = tab.input_value("#neurons-neuron")
    tab.wait_for_function(f"document.querySelector('#neurons-title').innerText.includes('neuron {picked}')")
    assert f"#{picked}" in tab.inner_text("#neurons-top")
    enter(tab, "neurons-neuron", "1")
    tab.wait_for_function("document.querySelector('#neurons-title').innerText.includes('neuron 1')")
    tab.wait_for_function(f"!document.querySelector('#neurons-top').innerText.includes('#{picked} ')")
    assert tab.js_errors == []



def test_neurons_first_visit_builds_and_the_page_follows(tab, server_url, runtime, smollm2, monkeypatch):
    """No index yet: the page says the default build is running (one job for two visitors); when it is
    done the alert goes, the Layer box fills and the neuron shows, with no reload."""
    import analysis.neurons.index as index_module
    import callbacks.neurons as neurons_callbacks

    monkeypatch.setattr(index_module, "INDEX_DIR", "neurons-first-visit")  # an empty index folder of its own
    monkeypatch.setattr(neurons_callbacks, "DEFAULT_BUILD_TOKENS", 256)  # a small default build
    earlier = {s.key for s in runtime.jobs.statuses()}
    second = tab.context.new_page()
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}")
    second.goto(f"{server_url}/neurons?model={EMBEDDED_LM}")
    tab.wait_for_selector("#neurons-error.show", timeout=60_000)
    assert "default build is running" in tab.inner_text("#neurons-error")
    builds = [s for s in runtime.jobs.statuses() if s.key.startswith("neurons-build:") and s.running]
    assert len(builds) <= 1  # the second visitor joined the first one's build
    tab.wait_for_selector("#neurons-snippet-list .gb-snippet", timeout=240_000)
    tab.wait_for_selector("#neurons-error", state="hidden")
    assert tab.locator("#neurons-error.show").count() == 0
    assert "Layer" in tab.inner_text("#neurons-title")
    assert "layer 15" in tab.inner_text("#neurons-layer")  # the Layer box filled without a reload
    tab.click("#neurons-layer")
    tab.keyboard.type(str(smollm2.info.n_layers - 1))
    tab.wait_for_selector(f".dash-dropdown-option >> text=layer {smollm2.info.n_layers - 1}")  # every layer
    started = {s.key for s in runtime.jobs.statuses() if s.key.startswith("neurons-build:")} - earlier
    assert len(started) == 1  # one build for two visitors
    second.close()
    assert tab.js_errors == []

# ---- 5. layout: the selected token's panel is in view; each tool shows its own options ---------

def test_tokens_predictions_beside_the_strip_and_per_tool_controls(tab, server_url, runtime):
    tab.goto(f"{server_url}/tokens?sample={_sample(runtime)}")
    tab.wait_for_selector("#tokens-strips .gb-tok")
    tab.locator("#tokens-strips .gb-tok").nth(5).click()
    tab.wait_for_selector("#tokens-predictions, #tokens-panel table, #tokens-panel .gb-pred", timeout=60_000)
    box = tab.locator("#tokens-panel").bounding_box()
    assert box is not None and box["y"] + 120 < VIEW["height"], box  # visible without scrolling
    visible = lambda name: tab.locator(f"#tokens-ctl-{name}").is_visible()  # noqa: E731
    tab.click("#tokens-tool >> text=Loss")
    tab.wait_for_function("document.getElementById('tokens-ctl-rope').style.display === 'none'")
    assert not visible("layer") and not visible("head") and not visible("sim")
    tab.click("#tokens-tool >> text=Attention")
    tab.wait_for_function("document.getElementById('tokens-ctl-rope').style.display === ''")
    assert visible("layer") and visible("head") and not visible("sim") and not visible("site")
    screenshot(tab, "tokens-first-hour")


def test_neurons_compare_fits_its_box(tab, server_url, runtime, smollm2):
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=2&neuron=0")
    tab.click("#neurons-tabs >> text=Compare")
    tab.wait_for_selector("#neurons-compare h6")
    assert "cosine" in tab.inner_text("#neurons-compare")  # a comparison at once, not empty boxes
    tab.click("#neurons-layer-b")
    tab.locator(".dash-dropdown-option").first.click()
    enter(tab, "neurons-neuron-b", "3")
    tab.wait_for_selector("#neurons-compare h6", timeout=60_000)
    overflow = tab.evaluate("(() => { const e = document.querySelector('#neurons-compare'); "
                            "return e.scrollWidth - e.clientWidth; })()")
    assert overflow <= 1


# ---- 6. encoders on Tokens ---------------------------------------------------------------------

def test_encoder_word_pieces_wrap_and_default_to_attention(tab, server_url, runtime, minilm):
    tab.goto(f"{server_url}/tokens?model={EMBEDDED_ENCODER}&sample={_sample(runtime, 1500, 4000)}")
    tab.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    tab.wait_for_function("document.querySelector('#tokens-tool input[value=attention]').checked")
    assert tab.locator("#tokens-strips .gb-tok-cont").count() > 0  # ## pieces drawn as continuations
    overflow = tab.evaluate("Math.max(...[...document.querySelectorAll('#tokens-strips .gb-strip, #tokens-strips')]"
                            ".map(e => e.scrollWidth - e.clientWidth))")
    assert overflow <= 1, overflow
    assert not tab.locator("#tokens-error.show").count()


# ---- 7. lens readability -----------------------------------------------------------------------

def test_lens_kl_is_readable_by_default(tab, server_url, runtime):
    tab.goto(f"{server_url}/lens?sample={_sample(runtime)}&width=24")
    tab.wait_for_selector("#lens-grid .heatmaplayer", timeout=180_000)
    colorbar = tab.text_content("#lens-grid .colorbar") or ""
    assert "clipped" in colorbar and "p98" in colorbar, colorbar  # robust range, shown on the colour bar
    ticks = [t.strip() for t in tab.locator("#lens-summary .ytick text").all_text_contents() if t.strip()]
    assert ticks and all(t.replace(".", "").replace("0", "") in ("1", "") for t in ticks), ticks  # decades only
    top_ticks = tab.locator("#lens-grid .x2tick text, #lens-grid .xtick text").count()
    assert top_ticks >= 24  # the input tokens on the top axis too
    page_text = tab.inner_text("body")
    assert page_text.count("No tuned lens") <= 1


# ---- 8. defaults that show something ----------------------------------------------------------

def test_regions_opens_on_a_separating_layer_and_tokens_has_no_select_all(tab, server_url):
    tab.goto(f"{server_url}/regions?n=6")
    tab.wait_for_selector("#regions-heatmap .heatmaplayer .hm", timeout=180_000)
    assert "Regions of embed" not in title(tab, "regions-heatmap")  # not layer 0, where all sit in one cell
    assert tab.locator("#regions-heatmap .heatmaplayer .hm").count() == 3
    tab.goto(f"{server_url}/tokens")
    tab.wait_for_selector("#tokens-strips .gb-tok")
    tab.click("#tokens-sample")
    assert not tab.locator("text=Select All").is_visible()


# ---- 9-10. rendering glitches; Features without an SAE ----------------------------------------

def test_features_without_an_sae_shows_every_tab_and_one_note(tab, server_url, runtime, monkeypatch, tmp_path):
    import analysis.features.sae as sae_module

    monkeypatch.setattr(sae_module, "SHIPPED_SAE", tmp_path / "none")  # a fresh install without the artifact
    tab.goto(f"{server_url}/features?sample={_sample(runtime)}")
    tab.wait_for_selector("#features-no-sae .gb-no-sae")
    for name in ("Dashboard", "Your text", "Token lists", "Definition tree", "Steering", "Search by token"):
        assert tab.locator(f"#features-tab >> text={name}").is_visible(), name
    assert tab.locator("#features-train-start").is_visible()
    tab.click("#features-sample")
    tab.keyboard.type("code")
    tab.keyboard.press("Enter")
    tab.wait_for_timeout(1500)
    assert tab.locator(".gb-no-sae").count() == 1  # re-shown, not nested inside itself
    assert "needs an SAE" in tab.text_content("#features-logits")


def test_top_predictions_show_leading_spaces_and_api_docs_link_back(tab, server_url, runtime):
    tab.goto(f"{server_url}/tokens?sample={_sample(runtime)}")
    tab.wait_for_selector("#tokens-strips .gb-tok")
    tab.locator("#tokens-strips .gb-tok").nth(3).click()
    tab.wait_for_function("document.querySelector('#tokens-panel').innerText.includes('·')")
    tab.goto(f"{server_url}/api/v1/docs")
    tab.wait_for_selector(".card .path")
    assert tab.locator("a[href='/']").count() >= 1
    headings = tab.locator("h2, h3, h4, h5").all_inner_texts()
    assert any("Neurons" in h for h in headings) and any("Tokens" in h for h in headings), headings


def test_neuron_rows_have_their_own_scale_and_no_literal_newlines(tab, server_url, runtime, smollm2):
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=3&neuron=0")
    tab.wait_for_selector("#neurons-snippet-list .gb-snippet")
    assert "\\n" not in tab.inner_text("#neurons-summary")
    assert "own maximum" in tab.inner_text("#neurons-snippets")
    rows = tab.locator("#neurons-snippet-list .gb-snippet")
    assert all(rows.nth(i).locator(".gb-tok-max").count() == 1 for i in range(rows.count()))


# ---- also wanted: attention grids, try your own text, neuron -> Tokens --------------------------

def test_attention_grids_try_your_text_and_the_tokens_link(tab, server_url, runtime, smollm2):
    tab.goto(f"{server_url}/tokens?sample={_sample(runtime)}&tool=attention&tab=attention")
    tab.wait_for_selector("#tokens-attention-focus .heatmaplayer", timeout=120_000)
    tab.wait_for_selector("#tokens-attention-heads .heatmaplayer", timeout=120_000)
    assert tab.locator("#tokens-attention-heads .heatmaplayer image, #tokens-attention-heads .heatmaplayer .hm").count() >= 9
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=3&neuron=5")
    tab.wait_for_selector("#neurons-snippet-list .gb-snippet")
    enter(tab, "neurons-try-text", "The cat sat on the mat and purred.")
    tab.wait_for_selector("#neurons-try-snippet .gb-tok, #neurons-try-result .gb-tok", timeout=60_000)
    assert "max on this text" in tab.inner_text("#neurons-try-result")
    href = tab.get_attribute("#neurons-tokens-link", "href") or ""
    assert "site=mlp.hook_post" in href and "dim=5" in href and "layer=3" in href, href
    tab.click("#neurons-tokens-link")
    tab.wait_for_selector("#tokens-strips .gb-tok", timeout=120_000)
    assert tab.input_value("#tokens-dim") == "5"


def test_no_replacement_characters_on_features_and_neurons(tab, server_url, runtime, smollm2):
    text = "Emoji 😀🧪 and CJK 日本語 — “quotes” — naïve café."  # split into byte tokens by the BPE
    tab.goto(f"{server_url}/features?sample=user")
    tab.fill("#features-text", text)
    tab.press("#features-text", "Tab")
    tab.wait_for_selector("#features-strip .gb-ftok", timeout=120_000)
    assert "\ufffd" not in tab.inner_text("body")
    ensure_index(runtime)
    tab.goto(f"{server_url}/neurons?model={EMBEDDED_LM}&layer=3&neuron=5")
    tab.wait_for_selector("#neurons-snippet-list .gb-snippet")
    enter(tab, "neurons-try-text", text)
    tab.wait_for_selector("#neurons-try-result .gb-tok", timeout=60_000)
    assert "\ufffd" not in tab.inner_text("body")


def test_lens_cell_text_stays_in_its_cell_on_every_stream(tab, server_url, runtime):
    """Cell text (the top token, shortened to fit) never spills into the neighbouring cell, on the residual,
    attention-output and MLP-output streams at the default 64 positions."""
    for residual in ("resid", "attn", "mlp"):
        tab.goto(f"{server_url}/lens?sample={_sample(runtime)}&width=64&view=logit&residual={residual}")
        tab.wait_for_selector("#lens-grid .heatmaplayer text", timeout=180_000)
        spill = tab.evaluate("""() => {
            const texts = [...document.querySelectorAll('#lens-grid .heatmaplayer text')];
            const ticks = [...document.querySelectorAll('#lens-grid .xtick text')];
            const pitch = (ticks[ticks.length - 1].getBoundingClientRect().x - ticks[0].getBoundingClientRect().x)
                          / (ticks.length - 1);
            return {pitch, over: texts.filter(t => t.getBBox().width > pitch).length, n: texts.length}; }""")
        assert spill["n"] > 1000 and spill["over"] == 0, (residual, spill)
