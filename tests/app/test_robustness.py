"""Robustness sweep: every page's main callbacks (called as functions) and every API route get hostile input —
empty, 100,000 characters, random unicode/control characters, unknown models, wrong layer/head/neuron indices,
bad upload files — and answer with a clear message naming the problem (page alert / 4xx JSON "error"), never a
stack trace; a following good request still works. Oversized input is rejected by bounds before the model
runs (``forward_count`` does not move)."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path
from typing import Any

import pytest

from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM
from tests.helpers import DashReply, dash_call

GOOD = "The cat sat on the mat."
HUGE = "lorem ipsum " * 8334  # 100,008 characters
UNEXPECTED = "Something went wrong"  # callbacks.common.friendly's wording for an unexpected exception


def _random_unicode(seed: int = 0, n: int = 120) -> str:
    """Control characters, RTL marks, combining marks, CJK, emoji, a NUL and a lone surrogate."""
    rng = random.Random(seed)
    pool = [chr(c) for c in range(0, 32)] + ["\u202e", "\u200b", "\u0301", "\ufeff", "\U0001f600", "\U0001f9ea",
                                             "\u4e2d", "\u0416", "\x7f", "\ud800", "\uffff"]
    pool += [chr(rng.randrange(0x20, 0x3000)) for _ in range(200)]
    return "".join(rng.choice(pool) for _ in range(n))


UNICODE = _random_unicode()

def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    if isinstance(component, dict):  # a component as Dash serialises it
        return _text(component.get("props", {}).get("children"))
    return _text(getattr(component, "children", None))


def _clear(message: Any, *words: str) -> None:
    """A clear message: non-empty, not the unexpected-error wording, naming the problem."""
    text = _text(message)
    assert text and UNEXPECTED not in text, text
    for word in words:
        assert word.lower() in text.lower(), text


def _refused(reply: DashReply, page: str, *words: str) -> str:
    """The callback refused: its outputs are left as they were and one clear message shows."""
    assert reply.outputs == {}, f"outputs changed on a refusal: {list(reply.outputs)}"
    message = reply.message(page)
    assert message is not None, f"no message shown: {reply.side}"
    _clear(message, *words)
    return message


@pytest.fixture(scope="module")
def call(client, dash_app):
    return lambda output, values: dash_call(client, dash_app, output, values)


# ---- Tokens ------------------------------------------------------------------------------------

def _tokens_values(model=EMBEDDED_LM, samples=("user",), text=GOOD) -> dict:
    return {"tokens-model.value": model, "tokens-sample.value": list(samples), "tokens-text.value": text,
            "tokens-tool.value": "predictions"}


def _tokens_ok(call) -> dict:
    reply = call("tokens-strips.children", _tokens_values())
    meta = reply.outputs["tokens-meta"]["data"]
    assert meta["lengths"][0] > 3
    return meta


@pytest.mark.parametrize("model, text, words", [
    (EMBEDDED_LM, "", ["empty"]),
    (EMBEDDED_LM, "   \n\t ", ["empty"]),
    (EMBEDDED_LM, HUGE, ["100,008", "20,000"]),
    ("no/such-model", GOOD, ["no/such-model", "models"]),
    ("../../etc/passwd", GOOD, ["../../etc/passwd", "models"]),
])
def test_tokens_load_rejects(call, smollm2, model, text, words):
    before = smollm2.forward_count
    _refused(call("tokens-strips.children", _tokens_values(model, text=text)), "tokens", *words)
    assert smollm2.forward_count == before
    _tokens_ok(call)


def test_tokens_unknown_and_too_many_samples(call, smollm2):
    _refused(call("tokens-strips.children", _tokens_values(samples=["no-such-sample"], text=None)), "tokens",
             "no-such-sample")
    _refused(call("tokens-strips.children", _tokens_values(samples=[], text=None)), "tokens", "sample")
    _tokens_ok(call)


def test_tokens_random_unicode(call, smollm2):
    reply = call("tokens-strips.children", _tokens_values(text=UNICODE))
    if reply.outputs:
        assert reply.outputs["tokens-meta"]["data"]["lengths"][0] > 5
    else:
        _refused(reply, "tokens")
    _tokens_ok(call)


def _paint_values(meta: dict, layer: Any = 1, head: Any = 1, sel: dict | None = None, tool: str = "attention") -> dict:
    return _tokens_values() | {
        "tokens-meta.data": meta, "tokens-selected.data": sel or {"s": 0, "i": 2}, "tokens-tool.value": tool,
        "tokens-site.value": "hook_resid_post", "tokens-layer.value": layer, "tokens-head.value": head,
        "tokens-mean.value": False, "tokens-direction.value": "from", "tokens-rope.value": "full",
        "tokens-sim.value": "tokens", "tokens-dim.value": 0, "tokens-norm.value": "none"}


@pytest.mark.parametrize("layer, head, field, words", [
    (30, 0, "tokens-layer", ["layer", "0 to 29", "30"]), (-1, 0, "tokens-layer", ["layer", "0 to 29"]),
    ("abc", 0, "tokens-layer", ["layer", "abc"]), (None, 0, "tokens-layer", ["layer", "required"]),
    (0, 9, "tokens-head", ["head", "0 to 8"]), (0, -3, "tokens-head", ["head"]),
    (0, 1e12, "tokens-head", ["head", "0 to 8"]),
])
def test_tokens_paint_bad_layer_head(call, smollm2, layer, head, field, words):
    meta = _tokens_ok(call)
    before = smollm2.forward_count
    reply = call("tokens-paint.data", _paint_values(meta, layer, head))
    _refused(reply, "tokens", *words)
    assert reply.field_error(field) is not None, reply.side  # marked beside its own field
    assert smollm2.forward_count == before
    good = call("tokens-paint.data", _paint_values(meta)).outputs["tokens-paint"]["data"]
    assert len(good["values"][0]) == meta["lengths"][0]


def test_tokens_selection_out_of_range_is_clamped(call, smollm2):
    meta = _tokens_ok(call)
    reply = call("tokens-paint.data", _paint_values(meta, 0, 0, {"s": 9, "i": 10**9}, tool="loss"))
    assert reply.outputs["tokens-paint"]["data"]["sel"] == [0, meta["lengths"][0] - 1]


def test_tokens_bad_highlight_dims(call, smollm2):
    meta = _tokens_ok(call)
    values = _paint_values(meta) | {"tokens-tabs.active_tab": "scatter", "tokens-highlight.value": "12, 99999, x" + HUGE}
    reply = call("tokens-panel.children", values)
    _refused(reply, "tokens", "highlight")
    assert reply.field_error("tokens-highlight") is not None


def test_an_alert_closes_on_the_next_success(call):
    """The alert a callback opened closes when that callback next succeeds; a field mark clears likewise."""
    bad = call("tokens-strips.children", _tokens_values(text=""))
    owner = bad.side["tokens-error-owner"]["data"]
    good = call("tokens-strips.children", _tokens_values() | {"tokens-error-owner.data": owner})
    assert good.side["tokens-error"] == {"is_open": False}
    meta = good.outputs["tokens-meta"]["data"]
    assert call("tokens-paint.data", _paint_values(meta)).side["tokens-layer"] == {"invalid": False}


# ---- Lens --------------------------------------------------------------------------------------

def _lens(call, model=EMBEDDED_LM, text=GOOD, stat="kl_final", view="logit", residual="resid", div="js", start=0,
          width=8, source="", scale="auto") -> DashReply:
    return call("lens-grid.figure", {
        "lens-model.value": model, "lens-sample.value": "user", "lens-text.value": text, "lens-stat.value": stat,
        "lens-view.value": view, "lens-residual.value": residual, "lens-div.value": div, "lens-start.value": start,
        "lens-width.value": width, "lens-source.value": source, "lens-scale.value": scale})


@pytest.mark.parametrize("kwargs, words", [
    ({"text": ""}, ["empty"]),
    ({"text": HUGE}, ["20,000"]),
    ({"model": "no/such-model"}, ["no/such-model"]),
    ({"stat": "bogus"}, ["bogus"]),
    ({"view": "sideways"}, ["sideways"]),
    ({"residual": "nope"}, ["nope"]),
    ({"scale": "sqrt"}, ["sqrt"]),
    ({"view": "diff", "div": "xx"}, ["divergence", "xx"]),
    ({"view": "tuned", "source": "/nonexistent/lens"}, ["/nonexistent/lens"]),
    ({"width": 999}, ["1 to 256"]),
    ({"width": 0}, ["1 to 256"]),
    ({"start": 5000}, ["start"]),
    ({"start": 500}, ["start"]),
    ({"source": "../../../../etc", "view": "tuned"}, ["lens"]),
])
def test_lens_rejects(call, smollm2, kwargs, words):
    before = smollm2.forward_count if kwargs.get("text") in ("", HUGE) else None
    _refused(_lens(call, **kwargs), "lens", *words)
    if before is not None:
        assert smollm2.forward_count == before
    assert _lens(call).outputs["lens-grid"]["figure"]["data"][0]["type"] == "heatmap"


def test_lens_random_unicode(call, smollm2):
    reply = _lens(call, text=UNICODE)
    if reply.outputs:
        assert reply.outputs["lens-grid"]["figure"]["data"][0]["type"] == "heatmap"
    else:
        _refused(reply, "lens")
    assert _lens(call).outputs


# ---- Regions -----------------------------------------------------------------------------------

def _upload(raw: bytes, mime: str = "text/csv") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _load(call, source="upload", n=6, contents=None, filename=None) -> DashReply:
    return call("regions-dataset.data", {"regions-source.value": source, "regions-n.value": n,
                                         "regions-upload.contents": contents, "regions-upload.filename": filename,
                                         "regions-load.n_clicks": 1})


@pytest.mark.parametrize("contents, filename, words", [
    (None, "a.csv", ["choose"]),
    ("data:text/csv;base64,", "a.csv", ["a.csv", "no columns"]),
    (_upload(PNG, "image/png"), "picture.png", ["picture.png", "utf-8"]),
    (_upload(PNG), "data.csv", ["data.csv", "utf-8"]),
    (_upload(b"sentence,category\nhello,a\nworld,b\n"), "cols.csv", ["'text' column", "sentence"]),
    (_upload(b"text\nhello\nworld\n"), "nolabel.csv", ["label"]),
    (_upload(b'{"text": "a", "label": "x"}\n{broken'), "bad.jsonl", ["bad.jsonl"]),
    (_upload(b"text,label\n" + b"hello world,a\n" * 6000), "big.csv", ["5,000"]),
    ("data:text/csv;base64," + "A" * 28_000_000, "huge.csv", ["huge.csv", "upload limit"]),
    ("not a data url", "x.csv", ["empty"]),
])
def test_regions_bad_uploads(call, contents, filename, words):
    _refused(_load(call, contents=contents, filename=filename), "regions", *words)
    good = _load(call, contents=_upload(b"text,label\nhello there,a\ngood bye,b\n"), filename="ok.csv")
    assert good.outputs["regions-dataset"]["data"]["n"] == 2


def test_regions_upload_with_unicode_and_huge_texts(call, minilm):
    rows = "text,label\n" + "\n".join(f'"{UNICODE.replace(chr(34), "")[:80]}",{lab}' for lab in "ab" * 3)
    rows += f'\n"{HUGE}",a\n'
    reply = _load(call, contents=_upload(rows.encode("utf-8", "surrogatepass")), filename="u.csv")
    if reply.outputs:
        assert reply.outputs["regions-dataset"]["data"]["n"] >= 2
    else:
        _refused(reply, "regions")


@pytest.mark.parametrize("n, words", [(0, ["per label"]), ("many", ["whole number"]), (10**9, ["5,000"])])
def test_regions_builtin_bad_counts(call, n, words):
    _refused(_load(call, source="builtin", n=n), "regions", *words)


@pytest.fixture(scope="module")
def regions_acts(call, minilm):
    from callbacks import regions

    summary = _load(call, source="builtin", n=6).outputs["regions-dataset"]["data"]
    return summary, regions.run_extraction(summary, EMBEDDED_ENCODER, "first")


def test_regions_extraction_refusals(call, runtime, regions_acts):
    summary, _acts = regions_acts
    values = {"regions-dataset.data": summary, "regions-model.value": "no/such-model", "regions-pooling.value": "first",
              "regions-extract-start.n_clicks": 1}
    reply = call("regions-extract-key.data", values)
    if reply.outputs:  # the unknown model is found by the job itself: its failure names the model
        status = runtime.jobs.wait(reply.outputs["regions-extract-key"]["data"], timeout=60)
        assert status is not None and status.state == "failed"
        _clear(status.error, "no/such-model")
    else:
        _refused(reply, "regions", "no/such-model")
    _refused(call("regions-extract-key.data", values | {"regions-model.value": EMBEDDED_ENCODER,
                                                        "regions-pooling.value": "sideways"}), "regions", "sideways")


def _reduce(call, acts, method="pca", k=2, grid=10, seed=42) -> DashReply:
    return call("regions-reduced.data", {"regions-acts.data": acts, "regions-method.value": method,
                                         "regions-k.value": k, "regions-grid.value": grid, "regions-seed.value": seed})


@pytest.mark.parametrize("method, k, grid, seed, words", [
    ("pca", 40, 10, 42, ["components", "2 to 17"]), ("tsne", 2, 10, 42, ["tsne"]), ("pca", "two", 10, 42, ["whole number"]),
    ("pca", 2, 10**6, 42, ["grid"]), ("pca", 2, 10, -1, ["random state", "-1"]),
])
def test_regions_bad_reductions(call, regions_acts, method, k, grid, seed, words):
    _refused(_reduce(call, regions_acts[1], method, k, grid, seed), "regions", *words)


def test_regions_bad_views(call, regions_acts):
    store = _reduce(call, regions_acts[1]).outputs["regions-reduced"]["data"]
    heat = call("regions-heatmap.figure", {"regions-reduced.data": store, "regions-layer.value": 999,
                                           "regions-cats.value": ["prose"], "regions-scatter.value": False})
    _refused(heat, "regions", "layer", "999")
    graph = {"regions-reduced.data": store, "regions-graph-cats.value": ["prose", "code"], "regions-threshold.value": 0.3}
    reply = call("regions-graph.figure", graph | {"regions-threshold.value": "high"})
    _refused(reply, "regions", "threshold")
    assert reply.field_error("regions-threshold") is not None
    _refused(call("regions-graph.figure", graph | {"regions-min-weight.value": -1}), "regions", "edge weight")
    fig = call("regions-graph.figure", graph).outputs["regions-graph"]["figure"]
    assert {"prose", "code"} <= {t.get("name") for t in fig["data"]}


def test_regions_svd_on_default_pooling(call, regions_acts):
    assert _reduce(call, regions_acts[1], "svd").outputs["regions-reduced"]["data"]["params"]["method"] == "svd"


# ---- Features ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sae(tmp_path_factory, runtime):
    from tests.helpers import make_sae

    return make_sae(tmp_path_factory.mktemp("robust-sae") / "sae", seed=5)


RELATIVE_NON_SAE = "<relative path to a folder without an SAE>"


def _dash(call, sae, model=EMBEDDED_LM, text=GOOD, feature=3, sae_ref=None) -> DashReply:
    return call("features-info.children", {
        "features-model.value": model, "features-sample.value": "user", "features-text.value": text,
        "features-sae.value": sae if sae_ref is None else sae_ref, "features-feature.value": feature,
        "features-scan-tokens.value": 2000, "features-tab.active_tab": "dash"})


@pytest.mark.parametrize("kwargs, words", [
    ({"text": ""}, ["empty"]),
    ({"text": HUGE}, ["20,000"]),
    ({"model": "no/such-model"}, ["no/such-model"]),
    ({"feature": 96}, ["0 to 95"]),
    ({"feature": -1}, ["0 to 95"]),
    ({"feature": "abc"}, ["feature"]),
    ({"sae_ref": "/nonexistent/sae"}, ["/nonexistent/sae"]),
    ({"sae_ref": RELATIVE_NON_SAE}, ["sae-lens sae folder", "cfg.json"]),
])
def test_features_dashboard_rejects(call, sae, smollm2, kwargs, words):
    before = smollm2.forward_count
    if kwargs.get("sae_ref") == RELATIVE_NON_SAE:  # a relative '../..' path to a real folder that holds no SAE
        kwargs = {"sae_ref": os.path.relpath(Path(sae).parent)}
    _refused(_dash(call, sae, **kwargs), "features", *words)
    if kwargs.get("text") in ("", HUGE):
        assert smollm2.forward_count == before
    assert _dash(call, sae).outputs["features-logits"]["figure"]["data"]


def test_features_random_unicode(call, sae, smollm2):
    reply = _dash(call, sae, text=UNICODE)
    if not reply.outputs:
        _refused(reply, "features")
    assert _dash(call, sae).outputs


def test_features_steer_and_search_bounds(call, sae, smollm2):
    before = smollm2.forward_count
    steer = {"features-model.value": EMBEDDED_LM, "features-sae.value": sae, "features-feature.value": 3,
             "features-steer-prompt.value": "Hello", "features-steer-mode.value": "add",
             "features-steer-strength.value": 8.0, "features-steer-n.value": 5, "features-steer-run.n_clicks": 1}
    _refused(call("features-steer-box.children", steer | {"features-steer-prompt.value": HUGE}), "features", "2,000")
    assert smollm2.forward_count == before
    _refused(call("features-steer-box.children", steer | {"features-steer-n.value": 500}), "features",
             "new tokens", "80")
    _refused(call("features-steer-box.children", steer | {"features-steer-strength.value": "nan"}), "features",
             "strength")
    search = {"features-model.value": EMBEDDED_LM, "features-sae.value": sae, "features-search-token.value": HUGE,
              "features-scan-tokens.value": 2000, "features-search-run.n_clicks": 1}
    _refused(call("features-search-box.children", search), "features", "token")
    assert smollm2.forward_count == before


# ---- Neurons -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def indexed(runtime, smollm2):
    from tests.helpers import ensure_index

    ensure_index(runtime)


def _neuron(call, model=EMBEDDED_LM, layer="3", neuron=0) -> DashReply:
    return call("neurons-title.children", {"neurons-model.value": model, "neurons-layer.value": layer,
                                           "neurons-neuron.value": neuron, "neurons-whole.value": False})


@pytest.mark.parametrize("model, layer, neuron, words", [
    ("no/such-model", "3", 0, ["no/such-model"]),
    (EMBEDDED_LM, "29", 0, ["29"]),
    (EMBEDDED_LM, "-1", 0, ["-1"]),
    (EMBEDDED_LM, "abc", 0, ["layer", "abc"]),
    (EMBEDDED_LM, "3", 1536, ["1536"]),
    (EMBEDDED_LM, "3", -1, ["neuron"]),
    (EMBEDDED_LM, "3", "x" * 1000, ["neuron"]),
    (EMBEDDED_LM, "3", 10**30, ["neuron"]),
])
def test_neurons_show_rejects(call, indexed, model, layer, neuron, words):
    _refused(_neuron(call, model, layer, neuron), "neurons", *words)
    assert "Layer 3" in _text(_neuron(call).outputs["neurons-title"]["children"])


@pytest.mark.parametrize("token", ["", HUGE, UNICODE, "\x00"])
def test_neurons_search_bad_tokens(call, indexed, smollm2, token):
    before = smollm2.forward_count
    reply = call("neurons-search-results.children", {"neurons-search.value": token, "neurons-model.value": EMBEDDED_LM,
                                                     "neurons-search-button.n_clicks": 1})
    if reply.outputs:
        _clear(reply.outputs["neurons-search-results"]["children"])
    else:
        _refused(reply, "neurons", "token")
    assert smollm2.forward_count == before


def test_neurons_graph_and_compare_bad_indices(call, indexed):
    _refused(call("neurons-graph.figure", {"neurons-model.value": EMBEDDED_LM, "neurons-layer.value": "3",
                                           "neurons-neuron.value": 99999}), "neurons", "99999")
    _refused(call("neurons-compare.children", {"neurons-model.value": EMBEDDED_LM, "neurons-layer.value": "3",
                                               "neurons-neuron.value": 0, "neurons-layer-b.value": "28",
                                               "neurons-neuron-b.value": 5}), "neurons", "28")


# ---- JSON API ----------------------------------------------------------------------------------

def _good(client) -> None:
    resp = client.get("/api/v1/run", query_string={"text": GOOD})
    assert resp.status_code == 200 and len(resp.get_json()["tokens"]) > 3


@pytest.fixture(scope="module")
def api(client, runtime, smollm2):
    from tests.helpers import ensure_index

    ensure_index(runtime)
    return client


API_CASES = [
    ("get", "/api/v1/run", {}, 400, "text is required"),
    ("get", "/api/v1/run", {"text": ""}, 400, "text is required"),
    ("get", "/api/v1/run", {"text": HUGE}, 400, "20,000"),
    ("post", "/api/v1/run", {"text": HUGE}, 400, "20,000"),
    ("post", "/api/v1/run", {"text": 12345}, 400, "text is required"),
    ("get", "/api/v1/run", {"text": GOOD, "model": "no/such-model"}, 404, "no/such-model"),
    ("get", "/api/v1/run", {"text": GOOD, "model": EMBEDDED_ENCODER}, 400, "encoder"),
    ("get", "/api/v1/model", {"model": "no/such-model"}, 404, "no/such-model"),
    ("get", "/api/v1/lens", {"text": GOOD, "lens": "fisheye"}, 400, "fisheye"),
    ("get", "/api/v1/lens", {"text": GOOD, "statistic": "bogus"}, 400, "bogus"),
    ("get", "/api/v1/lens", {"text": GOOD, "width": 999}, 400, "width"),
    ("get", "/api/v1/lens", {"text": GOOD, "start": "x"}, 400, "start"),
    ("get", "/api/v1/lens", {"text": GOOD, "start": 900}, 400, "start"),
    ("get", "/api/v1/lens", {"text": HUGE}, 400, "20,000"),
    ("get", "/api/v1/lens", {"text": GOOD, "residual": "nope"}, 400, "nope"),
    ("get", "/api/v1/indexes", {"model": "no/such-model"}, 404, "no/such-model"),
    ("get", "/api/v1/neuron", {"neuron": 0}, 400, "layer is required"),
    ("get", "/api/v1/neuron", {"layer": 29, "neuron": 0}, 404, "29"),
    ("get", "/api/v1/neuron", {"layer": "abc", "neuron": 0}, 400, "abc"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": 1536}, 404, "1536"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": -1}, 400, "neuron"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": "x" * 100_000}, 400, "neuron"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": 0, "snippets": 0}, 400, "snippets"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": 0, "graph": "maybe"}, 400, "graph"),
    ("get", "/api/v1/neuron", {"layer": 3, "neuron": 0, "model": "no/such"}, 404, "no/such"),
    ("get", "/api/v1/layer", {"layer": 3, "sort": "sideways"}, 400, "sideways"),
    ("get", "/api/v1/layer", {"layer": 3, "limit": 0}, 400, "limit"),
    ("get", "/api/v1/layer", {"layer": 77}, 404, "77"),
    ("get", "/api/v1/search", {}, 400, "token is required"),
    ("get", "/api/v1/search", {"token": HUGE}, 400, "token"),
    ("get", "/api/v1/search", {"token": GOOD, "limit": -5}, 400, "limit"),
    ("get", "/api/v1/compare", {"layer_a": 3, "neuron_a": 0}, 400, "layer_b"),
    ("get", "/api/v1/compare", {"layer_a": 3, "neuron_a": 0, "layer_b": 3, "neuron_b": 99999}, 404, "99999"),
    ("get", "/api/v1/feature", {}, 400, "feature"),
    ("get", "/api/v1/feature", {"feature": 0, "sae": "/nonexistent/sae"}, 404, "/nonexistent/sae"),
    ("get", "/api/v1/feature", {"feature": -2}, 400, "feature"),
    ("get", "/api/v1/no-such-route", {}, 404, "Unknown API route"),
]


@pytest.mark.parametrize("method, path, args, status, word", API_CASES,
                         ids=[f"api-{i}" for i in range(len(API_CASES))])
def test_api_rejects(api, smollm2, method, path, args, status, word):
    before = smollm2.forward_count
    if method == "get":
        resp = api.get(path, query_string=args)
    else:
        resp = api.post(path, json=args)
    body = resp.get_json(silent=True)
    assert body is not None, resp.data[:300]
    assert resp.status_code == status and "error" in body, (resp.status_code, body)
    assert word.lower() in body["error"].lower(), body["error"]
    if args.get("text") == HUGE or args.get("token") == HUGE:
        assert smollm2.forward_count == before
    _good(api)


def test_api_bad_bodies_and_unicode(api, smollm2):
    resp = api.post("/api/v1/run", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]
    resp = api.post("/api/v1/run", data=b"\xff\xfe\x00binary", content_type="application/octet-stream")
    assert resp.status_code == 400 and "error" in resp.get_json()
    resp = api.post("/api/v1/run", json={"text": UNICODE.replace("\ud800", "")})
    assert resp.status_code in (200, 400), resp.data[:300]
    if resp.status_code == 400:
        _clear(resp.get_json()["error"])
    resp = api.get("/api/v1/search", query_string={"token": UNICODE.replace("\ud800", "")})
    assert resp.status_code in (200, 400, 404) and resp.get_json() is not None
    _good(api)


@pytest.mark.parametrize("route", ["/api/v1/run", "/api/v1/lens"])
def test_api_lone_surrogate_is_a_clear_400(api, route):
    resp = api.post(route, json={"text": "abc \ud800 def"})
    assert resp.status_code == 400 and "surrogate" in resp.get_json()["error"], resp.data[:200]
    _good(api)


@pytest.mark.parametrize("path", ["/tokens?layer=abc&head=-5&t=999999&site=zzz&tool=" + "x" * 5000,
                                  "/lens?stat=bogus&start=-1&width=1e9&view=%00",
                                  "/regions?n=-5&k=abc&grid=0&layer=99999&method=tsne",
                                  "/features?feature=-1&sae=%2e%2e%2f%2e%2e&tab=zzz",
                                  "/neurons?layer=zz&neuron=-9&tab=%ff", "/no-such-page"])
def test_pages_with_garbage_urls_still_render(api, path):
    resp = api.get(path)
    assert resp.status_code in (200, 404)
    layout = api.get("/_dash-layout")
    assert layout.status_code == 200
    assert api.get("/healthz").get_json()["status"] == "ok"


GARBAGE_QUERIES = {"tokens": {"layer": "abc", "head": "-5", "t": "999999", "site": "zzz", "tool": "x" * 5000},
                   "lens": {"stat": "bogus", "start": "-1", "width": "1e9", "view": "\x00"},
                   "regions": {"n": "-5", "k": "abc", "grid": "0", "layer": "99999", "method": "tsne"},
                   "features": {"feature": "-1", "sae": "../..", "tab": "zzz"},
                   "neurons": {"layer": "zz", "neuron": "-9", "tab": "\xff"}}


def test_every_page_layout_builds(dash_app):
    """Each registered page builds its layout with no query and with a garbage one (a component given a
    prop it does not take fails here, not only in a browser)."""
    import dash

    built = []
    for page in dash.page_registry.values():
        layout = page["layout"]
        name = page["path"].strip("/") or "home"
        for query in ({}, GARBAGE_QUERIES.get(name, {})):
            tree = layout(**query) if callable(layout) else layout
            assert tree is not None and dash_app._layout_value is not None
            assert "props" in tree.to_plotly_json()
        built.append(name)
    assert {"home", "tokens", "lens", "regions", "features", "neurons"} <= set(built)


def _component_types(tree) -> set[str]:
    """Every Dash component type in a layout tree."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif hasattr(node, "_type"):
            found.add(f"{node._namespace}.{node._type}")
            stack.extend(getattr(node, name, None) for name in ("children", "label", "tab_label"))
    return found


def test_shell_resolves_every_lazy_component_pages_use(dash_app):
    """dcc's lazily loaded components suspend on their first render and React's retry waits while
    updates keep coming, so a page's first Model dropdown stayed blank for ~90 s during a model load.
    The shell renders one hidden instance of each; every lazy type a page uses must be among them."""
    import dash

    from app.shell import lazy_warmup

    lazy = {f"dash_core_components.{name}" for name in
            ("Dropdown", "Graph", "Slider", "RangeSlider", "Upload", "Markdown", "DatePickerSingle",
             "DatePickerRange")}
    warm = _component_types(lazy_warmup()) & lazy
    used: set[str] = set()
    for page in dash.page_registry.values():
        layout = page["layout"]
        used |= _component_types(layout() if callable(layout) else layout) & lazy
    assert "dash_core_components.Dropdown" in used and "dash_core_components.Graph" in used
    assert used <= warm, f"lazy dcc types a page uses but the shell does not warm up: {sorted(used - warm)}"
    assert lazy_warmup().style == {"display": "none"}


def test_no_callback_loop_runs_through_two_callbacks(client, dash_app):
    """Dash resolves a loop only inside one callback; through two it stalls the page (a typed value sends
    no request while any callback of the page runs). Every input -> output path is checked."""
    import networkx as nx

    if not dash_app.callback_map:
        client.get("/_dash-dependencies")
    graph = nx.DiGraph()
    for key, spec in dash_app.callback_map.items():
        outputs = [part.split("@")[0] for part in key.strip(".").split("...")]
        node = "callback:" + outputs[0]
        for dep in spec["inputs"]:
            graph.add_edge(f"{dep['id']}.{dep['property']}", node)
        for out in outputs:
            graph.add_edge(node, out)
    loops = [c for c in nx.simple_cycles(graph) if sum(n.startswith("callback:") for n in c) > 1]
    assert loops == []
