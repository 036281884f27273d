"""Circuits page glue, the JSON API routes and the figure CLI on the embedded SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.circuits import contributions, direct_logit_attribution
from analysis.settings import EMBEDDED_LM
from callbacks.circuits import DEFAULT_PROMPT
from components.pickers import USER_SAMPLE
from tests.helpers import dash_call, plotly_array

M = EMBEDDED_LM
P = "circuits"


def _controls(**over):
    values = {f"{P}-model.value": M, f"{P}-sample.value": USER_SAMPLE, f"{P}-text.value": DEFAULT_PROMPT,
              f"{P}-position.value": "", f"{P}-target.value": "top", f"{P}-contrast.value": ""}
    values.update({f"{P}-{k}.value": v for k, v in over.items()})
    return values


def test_attribution_callback_draws_and_sums(client, dash_app, runtime, smollm2):
    reply = dash_call(client, dash_app, f"{P}-heads.figure", _controls(target=" Paris", contrast=" London"))
    heads = plotly_array(reply.outputs[f"{P}-heads"]["figure"]["data"][0]["z"])
    att = direct_logit_attribution(runtime, M, DEFAULT_PROMPT, None, " Paris", " London")
    np.testing.assert_allclose(heads, att.heads, rtol=1e-6)
    summary = reply.outputs[f"{P}-summary"]["children"]
    assert f"logit {att.logit:.3f}" in summary and f"(sum {att.total:.3f})" in summary
    assert att.logit > 0  # SmolLM2 prefers Paris over London after "The Eiffel Tower is located in the city of"


@pytest.mark.parametrize("field, value, words", [
    ("position", "99", ["Position", "0 to 9"]),
    ("target", " Parisian Paris", ["tokens", "one token"]),
    ("contrast", "#999999", ["outside the vocabulary"]),
])
def test_bad_inputs_are_marked_on_their_field(client, dash_app, smollm2, field, value, words):
    reply = dash_call(client, dash_app, f"{P}-heads.figure", _controls(**{field: value}))
    message = reply.field_error(f"{P}-{field}")
    assert message is not None, reply.side
    for word in words:
        assert word in message


def test_graph_threshold_change_reuses_the_run(client, dash_app, runtime, smollm2):
    values = _controls() | {f"{P}-tabs.active_tab": "graph", f"{P}-threshold.value": 0.04, f"{P}-renorm.value": [1]}
    first = dash_call(client, dash_app, f"{P}-graph.figure", values)
    forwards = smollm2.forward_count
    second = dash_call(client, dash_app, f"{P}-graph.figure", values | {f"{P}-threshold.value": 0.1})
    assert smollm2.forward_count == forwards
    n_first = len(first.outputs[f"{P}-graph"]["figure"]["data"])
    n_second = len(second.outputs[f"{P}-graph"]["figure"]["data"])
    assert n_second < n_first  # fewer edges (one trace each) at a higher threshold
    bad = dash_call(client, dash_app, f"{P}-graph.figure", values | {f"{P}-threshold.value": 0.9})
    assert ">= 0.01 and <= 0.5" in (bad.field_error(f"{P}-threshold") or "")
    contrib = contributions(runtime, M, DEFAULT_PROMPT)
    assert len(contrib.layers) == 30


def test_graph_click_shows_heads_and_neuron_links(client, dash_app, smollm2):
    values = _controls() | {f"{P}-graph.clickData": {"points": [{"customdata": {"kind": "edge", "layer": 5,
                                                                               "source": 2, "target": 9}}]}}
    reply = dash_call(client, dash_app, f"{P}-graph-detail.children", values)
    text = str(reply.outputs[f"{P}-graph-detail"]["children"])
    assert "/tokens?" in text and "layer=5" in text and "t=9" in text
    values[f"{P}-graph.clickData"] = {"points": [{"customdata": {"kind": "mlp", "layer": 7, "token": 9}}]}
    reply = dash_call(client, dash_app, f"{P}-graph-detail.children", values)
    text = str(reply.outputs[f"{P}-graph-detail"]["children"])
    assert "/neurons?" in text and "layer=7" in text


def test_api_routes(client, smollm2):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("attribution", "contributions", "patching"):
        assert f"/api/v1/{path}" in spec["paths"]
    body = client.get("/api/v1/attribution", query_string={"text": DEFAULT_PROMPT, "target": " Paris"}).get_json()
    assert body["total"] == pytest.approx(body["logit"], rel=1e-4)
    assert len(body["heads"]) == 30 and len(body["heads"][0]) == 9
    graph = client.get("/api/v1/contributions", query_string={"text": DEFAULT_PROMPT, "threshold": 0.05}).get_json()
    assert graph["threshold"] == 0.05 and graph["edges"]
    grid = client.post("/api/v1/patching", json={"text": DEFAULT_PROMPT, "corrupted": "The Colosseum is located in "
                                                 "the city of", "site": "attn", "positions": "8,9",
                                                 "target": " Paris", "contrast": " Rome"}).get_json()
    assert len(grid["values"]) == 30 and len(grid["values"][0]) == 2
    for query, status, word in [({"text": DEFAULT_PROMPT, "threshold": 2}, 400, "Threshold"),
                                ({"text": DEFAULT_PROMPT, "position": -1}, 400, "Position"),
                                ({"text": DEFAULT_PROMPT, "model": "nope"}, 404, "Unknown model")]:
        resp = client.get("/api/v1/contributions", query_string=query)
        assert resp.status_code == status and word in resp.get_json()["error"]
    resp = client.get("/api/v1/patching", query_string={"text": DEFAULT_PROMPT, "corrupted": "Too short."})
    assert resp.status_code == 400 and "same token count" in resp.get_json()["error"]


def test_figure_cli_renders_the_page_figures(tmp_path, smollm2):
    from app.figure import main

    out = tmp_path / "dla.svg"
    assert main(["circuits", "--target", " Paris", "--out", str(out)]) == 0
    assert out.read_text().startswith("<svg")
    out = tmp_path / "graph.svg"
    assert main(["circuits", "--figure", "graph", "--threshold", "0.05", "--out", str(out)]) == 0
    assert "<svg" in out.read_text()[:200]


def test_patch_job_keeps_the_typed_tokens_leading_space(runtime, smollm2):
    """' Paris' and 'Paris' are different tokens: the patching job must not strip what was typed."""
    from analysis.jobs import quiet_job
    from callbacks.circuits import patch_job

    _key, _title, work = patch_job(M, USER_SAMPLE, DEFAULT_PROMPT, None, "1-2", 0, "resid", "9", " Paris", " Rome")
    grid = work(quiet_job())
    assert grid.target_label == "logit ' Paris' − ' Rome'"
    paris = smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    rome = smollm2.tokenizer(" Rome", add_special_tokens=False)["input_ids"]
    logits = runtime.run(M, DEFAULT_PROMPT, []).logits[-1]
    assert grid.clean_value == pytest.approx(float(logits[paris[0]] - logits[rome[0]]), abs=1e-3)


def test_attribution_with_edits_shows_edited_minus_clean(runtime, smollm2):
    """Head L3.H2 ablated: its edited share is 0, so its delta is minus its clean share; the edited logit is the
    edited run's own logit and the pieces still sum to it. A feature edit writes into the residual itself:
    the part outside every component is named."""
    import callbacks.circuits as page

    clean = page.attribution_view(EMBEDDED_LM, USER_SAMPLE, DEFAULT_PROMPT, None, " Paris", None)
    base = direct_logit_attribution(runtime, EMBEDDED_LM, DEFAULT_PROMPT, None, " Paris")
    out = page.attribution_view(EMBEDDED_LM, USER_SAMPLE, DEFAULT_PROMPT, None, " Paris", None,
                                {"edits": "head:L3.H2", "src": ""})
    assert out["head_deltas"][3, 2] == pytest.approx(-base.heads[3, 2], abs=1e-5)
    from analysis.edits import HeadEdit

    edited_run = runtime.run(EMBEDDED_LM, DEFAULT_PROMPT, [], edits=[HeadEdit(3, 2)])
    paris = smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    assert out["edited_logit"] == pytest.approx(float(edited_run.logits[-1, paris]), abs=1e-3)
    assert "outside every component" not in out["summary"] and "→" in out["summary"]
    assert clean["n_tokens"] == out["n_tokens"]
    featured = page.attribution_view(EMBEDDED_LM, USER_SAMPLE, DEFAULT_PROMPT, None, " Paris", None,
                                     {"edits": "feature[embedded]:F100=30", "src": ""})
    assert "outside every component" in featured["summary"]
