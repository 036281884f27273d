"""JSON API /api/v1: every route, values against the analysis layer, bad input -> 4xx JSON, CORS."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM
from tests.helpers import ensure_index, index_config

M = EMBEDDED_LM


@pytest.fixture(scope="module")
def index_id(runtime, client, smollm2) -> str:
    from analysis.neurons.index import index_id as compute_id

    ensure_index(runtime)
    return compute_id(index_config())  # the small test index (a bigger real one may exist too)


def _err(resp, status: int, *words: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    return body


def test_openapi_documents_every_route_and_docs_page(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("models", "model", "run", "lens", "indexes", "neuron", "layer", "search", "compare", "feature", "docs"):
        assert f"/api/v1/{path}" in spec["paths"], path
    assert "post" in spec["paths"]["/api/v1/run"]
    params = {p["name"]: p for p in spec["paths"]["/api/v1/neuron"]["get"]["parameters"]}
    assert params["layer"]["required"] and params["neuron"]["schema"]["type"] == "integer"
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html and "http://" not in html and "https://" not in html  # offline


def test_models_and_model(client, smollm2):
    body = client.get("/api/v1/models").get_json()
    assert M in [m["id"] for m in body["models"]]
    info = client.get("/api/v1/model", query_string={"model": M}).get_json()
    assert info["n_layers"] == 30 and info["d_mlp"] == 1536 and info["d_model"] == 576
    _err(client.get("/api/v1/model", query_string={"model": "no/such-model"}), 404, "no/such-model")


def test_run_predictions_and_loss(client, runtime):
    text = "The cat sat on the mat. The cat sat on the"
    body = client.get("/api/v1/run", query_string={"model": M, "text": text}).get_json()
    run = runtime.run(M, text)
    assert body["tokens"] == run.tokens and body["token_ids"] == run.token_ids
    logp = torch.log_softmax(run.logits.float(), -1)
    for t in (0, 5, len(run.tokens) - 2):
        want = -float(logp[t, run.token_ids[t + 1]])
        assert body["loss"][t] == pytest.approx(want, rel=1e-4, abs=1e-4)
        probs = [p["prob"] for p in body["predictions"][t]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        assert body["predictions"][t][0]["token_id"] == int(logp[t].argmax())
        assert probs[0] == pytest.approx(float(logp[t].max().exp()), rel=1e-4)
    assert body["loss"][-1] is None
    posted = client.post("/api/v1/run", json={"model": M, "text": text}).get_json()
    assert posted["loss"] == body["loss"]


def test_run_bad_input(client, runtime, minilm):
    _err(client.get("/api/v1/run", query_string={"model": M}), 400, "text")
    _err(client.get("/api/v1/run", query_string={"model": M, "text": "   "}), 400, "text")
    long = "a " * (runtime.settings.max_text_chars // 2 + 10)
    _err(client.post("/api/v1/run", json={"model": M, "text": long}), 400, "limit")
    _err(client.get("/api/v1/run", query_string={"model": "nope", "text": "hi"}), 404, "nope")
    _err(client.get("/api/v1/run", query_string={"model": EMBEDDED_ENCODER, "text": "hi"}), 400, "encoder")
    _err(client.post("/api/v1/run", data="{not json", content_type="application/json"), 400, "JSON")


@pytest.mark.skipif(importlib.util.find_spec("analysis.lens.grid") is None, reason="the Lens page's module is absent")
def test_lens_grid(client):
    text = "Paris is the capital of France."
    body = client.get("/api/v1/lens", query_string={"model": M, "text": text, "statistic": "max_prob", "width": 4})
    assert body.status_code == 200, body.get_data(as_text=True)
    data = body.get_json()
    assert len(data["tokens"]) == 4 and len(data["values"]) == len(data["layer_labels"]) == 31
    top_final = data["top_tokens"][-1]
    run = client.get("/api/v1/run", query_string={"model": M, "text": text}).get_json()
    assert top_final == [p[0]["token"] for p in run["predictions"][:4]]  # the lens' last row is the model output
    _err(client.get("/api/v1/lens", query_string={"model": M, "text": text, "lens": "magic"}), 400, "lens")
    _err(client.get("/api/v1/lens", query_string={"model": M, "text": text, "width": 0}), 400, "width")
    _err(client.get("/api/v1/lens", query_string={"model": M, "text": text, "statistic": "nope"}), 400, "statistic")


def test_neuron_record(client, index_id, runtime):
    from analysis.neurons.index import open_index

    index = open_index(runtime, M, index_id)
    q = {"model": M, "layer": 2, "neuron": 5, "index": index_id}
    body = client.get("/api/v1/neuron", query_string=q).get_json()
    rec = index.unit(2, 5)
    assert body["max_act"] == pytest.approx(rec.max_act) and body["unit"] == 5 and body["layer"] == 2
    assert [s["act"] for s in body["snippets"]] == pytest.approx([s.act for s in rec.snippets])
    assert body["quantiles"]["0.5"] == pytest.approx(rec.quantiles["0.5"])
    assert len(body["similar"]) == 10 and {"cosine", "jaccard"} <= set(body["similar"][0])
    assert body["explanation"]["summary"] and body["explanation"]["llm"] is None
    assert len(body["logit_effects"]["positive"]) == 10
    few = client.get("/api/v1/neuron", query_string=q | {"snippets": 2, "similar": 3}).get_json()
    assert len(few["snippets"]) == 2 and len(few["similar"]) == 3


def test_neuron_bad_input(client, index_id):
    base = {"model": M, "index": index_id}
    _err(client.get("/api/v1/neuron", query_string=base | {"neuron": 1}), 400, "layer")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2}), 400, "neuron")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": "two", "neuron": 1}), 400, "layer")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2, "neuron": "x"}), 400, "neuron")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2, "neuron": -1}), 400, "neuron")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2, "neuron": 1, "snippets": 0}), 400, "snippets")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2, "neuron": 1, "graph": "maybe"}), 400, "graph")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 2, "neuron": 99999}), 404, "0..1535")
    _err(client.get("/api/v1/neuron", query_string=base | {"layer": 29, "neuron": 1}), 404, "Layer")
    _err(client.get("/api/v1/neuron", query_string={"model": "nope", "layer": 2, "neuron": 1}), 404, "nope")
    _err(client.get("/api/v1/neuron", query_string=base | {"index": "deadbeef", "layer": 2, "neuron": 1}), 404, "deadbeef")
    _err(client.get("/api/v1/no-such-route"), 404)


def test_layer_ranking(client, index_id):
    body = client.get("/api/v1/layer", query_string={"model": M, "layer": 1, "index": index_id, "limit": 20}).get_json()
    maxes = [n["max_act"] for n in body["neurons"]]
    assert len(maxes) == 20 and maxes == sorted(maxes, reverse=True)
    ranged = client.get("/api/v1/layer", query_string={"model": M, "layer": 1, "index": index_id, "sort": "range"}).get_json()
    ranges = [n["range"] for n in ranged["neurons"]]
    assert ranges == sorted(ranges, reverse=True)
    assert all(n["range"] == pytest.approx(n["max_act"] - n["min_act"]) for n in ranged["neurons"])
    _err(client.get("/api/v1/layer", query_string={"model": M, "layer": 1, "sort": "best"}), 400, "sort")
    _err(client.get("/api/v1/layer", query_string={"model": M, "layer": 1, "limit": 0}), 400, "limit")
    _err(client.get("/api/v1/layer", query_string={"model": M}), 400, "layer")
    _err(client.get("/api/v1/layer", query_string={"model": M, "layer": 40, "index": index_id}), 404, "Layer")


def test_token_search(client, index_id):
    body = client.get("/api/v1/search", query_string={"model": M, "token": "the", "index": index_id}).get_json()
    assert body["token_ids"] and body["results"]
    assert all(r["token_id"] in body["token_ids"] for r in body["results"])
    _err(client.get("/api/v1/search", query_string={"model": M}), 400, "token")
    _err(client.get("/api/v1/search", query_string={"model": M, "token": "x" * 200}), 400, "100")


def test_compare_and_indexes(client, index_id):
    q = {"model": M, "index": index_id, "layer_a": 0, "neuron_a": 3, "layer_b": 2, "neuron_b": 8}
    ab = client.get("/api/v1/compare", query_string=q).get_json()
    ba = client.get("/api/v1/compare", query_string=q | {"layer_a": 2, "neuron_a": 8, "layer_b": 0, "neuron_b": 3}).get_json()
    assert ab["cosine"] == pytest.approx(ba["cosine"]) and ab["jaccard"] == ba["jaccard"]
    _err(client.get("/api/v1/compare", query_string={"model": M, "layer_a": 0}), 400, "neuron_a")
    listed = client.get("/api/v1/indexes", query_string={"model": M}).get_json()["indexes"]
    assert index_id in [m["index_id"] for m in listed] and "path" not in listed[0]
    _err(client.get("/api/v1/indexes", query_string={"model": "nope"}), 404)


def test_feature_route(client, runtime):
    from analysis.features.sae import embedded_sae_exists

    if not embedded_sae_exists(runtime.settings.cache_dir):
        body = client.get("/api/v1/feature", query_string={"model": M, "feature": 3})
        assert 400 <= body.status_code < 500 and "make sae" in body.get_json()["error"]
        return
    rec = client.get("/api/v1/feature", query_string={"model": M, "feature": 3}).get_json()
    assert rec["feature"] == 3 and rec["logit_effects"]["positive"]
    _err(client.get("/api/v1/feature", query_string={"model": M, "feature": 10**9}), 404, "Feature")
    _err(client.get("/api/v1/feature", query_string={"model": M, "feature": "x"}), 400, "feature")


def test_cors(client, runtime):
    old = runtime.settings.cors_origins
    try:
        runtime.settings.cors_origins = []
        plain = client.get("/api/v1/models", headers={"Origin": "http://lab.example"})
        assert "Access-Control-Allow-Origin" not in plain.headers
        runtime.settings.cors_origins = ["http://lab.example"]
        allowed = client.get("/api/v1/models", headers={"Origin": "http://lab.example"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "http://lab.example"
        other = client.get("/api/v1/models", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        pre = client.options("/api/v1/neuron", headers={"Origin": "http://lab.example",
                                                        "Access-Control-Request-Method": "GET"})
        assert pre.status_code == 200 and "GET" in pre.headers["Access-Control-Allow-Methods"]
    finally:
        runtime.settings.cors_origins = old
