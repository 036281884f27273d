"""Circuits page in headless Chromium: attribution, a threshold change, click-through to Tokens and Neurons."""

from __future__ import annotations

from analysis.settings import EMBEDDED_LM
from tests.e2e.conftest import screenshot

CLICK_POINT = """(args) => {
  const gd = document.querySelector('#' + args.id + ' .js-plotly-plot');
  const trace = gd._fullData.findIndex(t => (t.name || '').startsWith(args.name));
  if (trace < 0) { return null; }
  const xs = gd._fullData[trace].x, ys = gd._fullData[trace].y;
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const i = Math.floor(xs.length / 2);
  return {x: box.left + xa._offset + xa.l2p(xs[i]), y: box.top + ya._offset + ya.l2p(ys[i])};
}"""


def _click_trace(page, graph_id: str, name: str) -> None:
    point = page.evaluate(CLICK_POINT, {"id": graph_id, "name": name})
    assert point is not None, f"no '{name}' trace in #{graph_id}"
    page.mouse.move(point["x"], point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(point["x"], point["y"])


def test_circuits_attribution_graph_and_click_through(page, server_url, runtime):
    page.goto(f"{server_url}/circuits?target=%20Paris&contrast=%20London")
    page.wait_for_function("document.querySelector('#circuits-summary') && "
                           "document.querySelector('#circuits-summary').textContent.includes('(sum ')",
                           timeout=180_000)
    summary = page.inner_text("#circuits-summary")
    assert "logit" in summary and "heads" in summary and "MLPs" in summary
    page.wait_for_selector("#circuits-heads .heatmaplayer image, #circuits-heads .hm", state="attached")
    assert "Paris" in page.evaluate("document.querySelector('#circuits-heads .gtitle').textContent")
    page.wait_for_function("location.search.includes('contrast=')")
    page.wait_for_function("document.querySelector('#circuits-model').textContent.includes('SmolLM2')")
    screenshot(page, "circuits")

    # click a head cell: a link to Tokens with that layer and head
    box = page.locator("#circuits-heads .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#circuits-head-link a")
    assert "/tokens?" in page.get_attribute("#circuits-head-link a", "href")

    # the contribution graph, then a higher threshold: fewer edges, no new forward pass
    page.click("#circuits-tabs >> text=Contribution graph")
    page.wait_for_function("document.querySelector('#circuits-graph-note').textContent.includes('edges')",
                           timeout=120_000)
    first = page.inner_text("#circuits-graph-note")
    screenshot(page, "circuits-graph")

    # an attention edge -> its heads with links to Tokens; an MLP square -> neurons linking to Neurons
    _click_trace(page, "circuits-graph", "attention edge")
    page.wait_for_selector("#circuits-graph-detail a[href*='/tokens?']")
    _click_trace(page, "circuits-graph", "MLP")
    page.wait_for_selector("#circuits-graph-detail a[href*='/neurons?']")
    href = page.get_attribute("#circuits-graph-detail a[href*='/neurons?']", "href")
    assert "layer=" in href and "neuron=" in href

    # a higher threshold (the slider's End key: 0.5): fewer edges, no new forward pass
    lm = runtime.model(EMBEDDED_LM)
    forwards = lm.forward_count
    page.locator("#circuits-threshold [role=slider]").first.press("End")
    page.wait_for_function("document.querySelector('#circuits-graph-note').textContent.includes('above 0.5')",
                           timeout=60_000)
    second = page.inner_text("#circuits-graph-note")
    assert int(second.split()[0]) < int(first.split()[0])
    assert lm.forward_count == forwards
    page.wait_for_function("location.search.includes('threshold=0.5')")
    assert page.js_errors == []


def test_circuits_patching_job_draws_the_grid(page, server_url):
    page.goto(f"{server_url}/circuits?tab=patching&target=%20Paris&contrast=%20Rome")
    page.fill("#circuits-positions", "1-4,9")
    page.press("#circuits-positions", "Enter")
    page.click("#circuits-patch-start")
    page.wait_for_function("document.querySelector('#circuits-patch-msg').textContent.includes('batched forwards')",
                           timeout=180_000)
    assert "150 cells in 121 batched forwards" in page.inner_text("#circuits-patch-msg")  # 1 corrupted pass + 30 x 4
    page.wait_for_selector("#circuits-patch-figure .heatmaplayer image, #circuits-patch-figure .hm", state="attached")
    assert "Patching resid" in page.evaluate("document.querySelector('#circuits-patch-figure .gtitle').textContent")
    screenshot(page, "circuits-patching")
    # a bad positions entry is marked on its field
    page.fill("#circuits-positions", "0-99")
    page.press("#circuits-positions", "Enter")
    page.click("#circuits-patch-start")
    page.wait_for_selector("#circuits-positions.is-invalid")
    assert "9" in page.inner_text("#circuits-positions-feedback")
    assert page.js_errors == []
