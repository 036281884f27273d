"""Robustness sweep: every page's main callbacks (called as functions) and every API route get hostile input —
empty, 100,000 characters, random unicode/control characters, unknown models, wrong layer/head/neuron indices,
bad upload files — and answer with a clear message naming the problem (page alert / 4xx JSON "error"), never a
stack trace; a following good request still works. Oversized input is rejected by bounds before the model
runs (``forward_count`` does not move)."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM

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
    return _text(getattr(component, "children", None))


def _clear(message: Any, *words: str) -> None:
    """A clear message: non-empty, not the unexpected-error wording, naming the problem."""
    text = _text(message)
    assert text and UNEXPECTED not in text, text
    for word in words:
        assert word.lower() in text.lower(), text


# ---- Tokens ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokens_cb(dash_app):
    from callbacks import tokens

    return tokens


def _tokens_ok(cb) -> dict:
    _body, meta, _l, _h, msg, is_open = cb.load_samples(EMBEDDED_LM, ["user"], GOOD)
    assert not is_open and meta["lengths"][0] > 3, msg
    return meta


@pytest.mark.parametrize("model, text, words", [
    (EMBEDDED_LM, "", ["empty"]),
    (EMBEDDED_LM, "   \n\t ", ["empty"]),
    (EMBEDDED_LM, HUGE, ["100,008", "20,000"]),
    ("no/such-model", GOOD, ["no/such-model", "model list"]),
    ("../../etc/passwd", GOOD, ["model list"]),
])
def test_tokens_load_rejects(tokens_cb, smollm2, model, text, words):
    before = smollm2.forward_count
    _body, meta, _l, _h, msg, is_open = tokens_cb.load_samples(model, ["user"], text)
    assert is_open and meta is None
    _clear(msg, *words)
    assert smollm2.forward_count == before
    _tokens_ok(tokens_cb)


def test_tokens_unknown_and_too_many_samples(tokens_cb, smollm2):
    _b, _m, _l, _h, msg, is_open = tokens_cb.load_samples(EMBEDDED_LM, ["no-such-sample"], None)
    assert is_open
    _clear(msg, "no-such-sample")
    _b, _m, _l, _h, msg, is_open = tokens_cb.load_samples(EMBEDDED_LM, [], None)
    assert is_open
    _clear(msg, "sample")
    _tokens_ok(tokens_cb)


def test_tokens_random_unicode(tokens_cb, smollm2):
    _b, meta, _l, _h, msg, is_open = tokens_cb.load_samples(EMBEDDED_LM, ["user"], UNICODE)
    if is_open:
        _clear(msg)
    else:
        assert meta["lengths"][0] > 5
    _tokens_ok(tokens_cb)


@pytest.mark.parametrize("layer, head, words", [
    (30, 0, ["layer", "0..29"]), (-1, 0, ["layer", "0..29"]), ("abc", 0, ["layer"]), (None, 0, ["layer"]),
    (0, 9, ["head", "0..8"]), (0, -3, ["head"]), (0, 1e12, ["head"]),
])
def test_tokens_paint_bad_layer_head(tokens_cb, smollm2, layer, head, words):
    meta = _tokens_ok(tokens_cb)
    before = smollm2.forward_count
    args = ({"s": 0, "i": 2}, "attention", "hook_resid_post", layer, head, False, "from", "full", "tokens", 0, "none",
            EMBEDDED_LM, ["user"], GOOD)
    data, _leg, _notes, msg, is_open = tokens_cb.paint(meta, *args)
    assert is_open
    _clear(msg, *words)
    assert smollm2.forward_count == before
    good = tokens_cb.paint(meta, {"s": 0, "i": 2}, "attention", "hook_resid_post", 1, 1, False, "from", "full",
                           "tokens", 0, "none", EMBEDDED_LM, ["user"], GOOD)
    assert good[4] is False and len(good[0]["values"][0]) == meta["lengths"][0]


def test_tokens_selection_out_of_range_is_clamped(tokens_cb, smollm2):
    meta = _tokens_ok(tokens_cb)
    data, *_rest, is_open = tokens_cb.paint(meta, {"s": 9, "i": 10**9}, "loss", "hook_resid_post", 0, 0, False,
                                            "from", "full", "tokens", 0, "none", EMBEDDED_LM, ["user"], GOOD)
    assert not is_open and data["sel"] == [0, meta["lengths"][0] - 1]


def test_tokens_bad_highlight_dims(tokens_cb, smollm2):
    meta = _tokens_ok(tokens_cb)
    out = tokens_cb.panel(meta, {"s": 0, "i": 1}, "scatter", "hook_resid_post", 0, "none", 0, "12, 99999, x" + HUGE,
                          EMBEDDED_LM, ["user"], GOOD)
    _clear(out, "99999", "0..575")


# ---- Lens --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lens_cb(dash_app):
    from callbacks import lens

    return lens


def _lens(cb, model=EMBEDDED_LM, text=GOOD, stat="kl_final", view="logit", residual="resid", div="js", start=0,
          width=8, source=""):
    return cb.update(model, "user", text, stat, view, residual, div, start, width, source, None)


@pytest.mark.parametrize("kwargs, words", [
    ({"text": ""}, ["empty"]),
    ({"text": HUGE}, ["20,000"]),
    ({"model": "no/such-model"}, ["no/such-model"]),
    ({"stat": "bogus"}, ["bogus"]),
    ({"view": "sideways"}, ["sideways"]),
    ({"residual": "nope"}, ["nope"]),
    ({"view": "diff", "div": "xx", "source": "/nonexistent/lens"}, ["lens"]),
    ({"width": 999}, ["256"]),
    ({"width": 0}, ["between 1 and 256"]),
    ({"start": 5000}, ["start"]),
    ({"start": 500}, ["start"]),
    ({"source": "../../../../etc"}, ["lens"]),
])
def test_lens_rejects(lens_cb, smollm2, kwargs, words):
    before = smollm2.forward_count if kwargs.get("text") in ("", HUGE) else None
    if kwargs.get("view") is None and "source" in kwargs:
        kwargs["view"] = "tuned"
    fig, _summary, _max, _note, msg, is_open, state, _style = _lens(lens_cb, **kwargs)
    assert is_open, f"no alert for {kwargs}"
    _clear(msg, *words)
    if before is not None:
        assert smollm2.forward_count == before
    good = _lens(lens_cb)
    assert good[5] is False and good[0].data[0].type == "heatmap"


def test_lens_random_unicode(lens_cb, smollm2):
    out = _lens(lens_cb, text=UNICODE)
    if out[5]:
        _clear(out[4])
    else:
        assert out[0].data[0].type == "heatmap"
    assert _lens(lens_cb)[5] is False


# ---- Regions -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def regions_cb(dash_app):
    from callbacks import regions

    return regions


def _upload(raw: bytes, mime: str = "text/csv") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


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
def test_regions_bad_uploads(regions_cb, contents, filename, words):
    with pytest.raises(Exception) as info:
        regions_cb.load_dataset("upload", 6, contents, filename, None, None, None)
    from callbacks.common import friendly

    _clear(friendly(info.value), *words)
    summary = regions_cb.load_dataset("upload", 6, _upload(b"text,label\nhello there,a\ngood bye,b\n"), "ok.csv",
                                      None, None, None)
    assert summary["n"] == 2


def test_regions_upload_with_unicode_and_huge_texts(regions_cb, minilm):
    rows = "text,label\n" + "\n".join(f'"{UNICODE.replace(chr(34), "")[:80]}",{lab}' for lab in "ab" * 3)
    rows += f'\n"{HUGE}",a\n'
    try:
        summary = regions_cb.load_dataset("upload", 6, _upload(rows.encode("utf-8", "surrogatepass")), "u.csv",
                                          None, None, None)
    except Exception as exc:  # noqa: BLE001 - a clear refusal is fine too
        from callbacks.common import friendly

        _clear(friendly(exc))
        return
    assert summary["n"] >= 2


@pytest.mark.parametrize("n, words", [(0, ["per label"]), ("many", ["whole number"]), (10**9, ["5,000"])])
def test_regions_builtin_bad_counts(regions_cb, n, words):
    from callbacks.common import friendly

    with pytest.raises(Exception) as info:
        regions_cb.load_dataset("builtin", n, None, None, None, None, None)
    _clear(friendly(info.value), *words)


def test_regions_unknown_model_and_bad_views(regions_cb, minilm):
    from callbacks.common import friendly

    summary = regions_cb.load_dataset("builtin", 6, None, None, None, None, None)
    with pytest.raises(Exception) as info:
        regions_cb.extraction_job(lambda _p: None, summary, "no/such-model", "first")
    _clear(friendly(info.value), "no/such-model")
    with pytest.raises(Exception) as info:
        regions_cb.extraction_job(lambda _p: None, summary, EMBEDDED_ENCODER, "sideways")
    _clear(friendly(info.value), "sideways")
    acts = regions_cb.extraction_job(lambda _p: None, summary, EMBEDDED_ENCODER, "first")
    for method, k, grid, seed, words in [("pca", 40, 10, 42, ["n_components"]), ("tsne", 2, 10, 42, ["tsne"]),
                                         ("pca", "two", 10, 42, ["whole number"]), ("pca", 2, 10**6, 42, ["grid"])]:
        out = regions_cb.on_reduce(acts, method, k, grid, seed, None, None)
        assert out[-1] is True
        _clear(out[-2], *words)
    store = regions_cb.on_reduce(acts, "pca", 2, 10, 42, None, None)[0]
    fig, _box, _scatter = regions_cb.on_heatmap(store, 999, ["prose"], False)
    assert fig.data, "an out-of-range layer is clamped to the last layer"
    fig, _metrics, _deg = regions_cb.on_graph(store, ["nope"], 0.3)
    _clear(fig.layout.annotations[0].text, "nope")
    fig, _metrics, _deg = regions_cb.on_graph(store, ["prose"], "high")
    _clear(fig.layout.annotations[0].text, "threshold")
    fig, _metrics, _deg = regions_cb.on_graph(store, ["prose", "code"], 0.3)
    assert {"prose", "code"} <= {t.name for t in fig.data}


def test_regions_svd_on_default_pooling(regions_cb, minilm):
    summary = regions_cb.load_dataset("builtin", 6, None, None, None, None, None)
    acts = regions_cb.extraction_job(lambda _p: None, summary, EMBEDDED_ENCODER, "first")
    out = regions_cb.on_reduce(acts, "svd", 2, 10, 42, None, None)
    assert out[-1] is False, out[-2]


# ---- Features ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def features(dash_app, tmp_path_factory, runtime):
    from callbacks import features
    from tests.helpers import make_sae

    return features, make_sae(tmp_path_factory.mktemp("robust-sae") / "sae", seed=5)


def _dash(cb, sae, model=EMBEDDED_LM, text=GOOD, feature=3, sae_ref=None):
    out = cb.on_dashboard(model, "user", text, sae if sae_ref is None else sae_ref, feature, None, 2000, "dash")
    return out[11], out[12], out


@pytest.mark.parametrize("kwargs, words", [
    ({"text": ""}, ["empty"]),
    ({"text": HUGE}, ["20,000"]),
    ({"model": "no/such-model"}, ["no/such-model"]),
    ({"feature": 96}, ["[0, 95]"]),
    ({"feature": -1}, ["[0, 95]"]),
    ({"feature": "abc"}, ["feature"]),
    ({"sae_ref": "/nonexistent/sae"}, ["/nonexistent/sae", "not found"]),
    ({"sae_ref": "../../etc"}, ["sae"]),
])
def test_features_dashboard_rejects(features, smollm2, kwargs, words):
    cb, sae = features
    before = smollm2.forward_count
    msg, is_open, _out = _dash(cb, sae, **kwargs)
    assert is_open
    _clear(msg, *words)
    if kwargs.get("text") in ("", HUGE):
        assert smollm2.forward_count == before
    msg, is_open, out = _dash(cb, sae)
    assert not is_open and out[4].data


def test_features_random_unicode(features, smollm2):
    cb, sae = features
    msg, is_open, _out = _dash(cb, sae, text=UNICODE)
    if is_open:
        _clear(msg)
    assert _dash(cb, sae)[1] is False


def test_features_steer_and_search_bounds(features, smollm2):
    cb, sae = features
    before = smollm2.forward_count
    out = cb.on_steer(1, EMBEDDED_LM, sae, 3, HUGE, "add", 8.0, 5)
    _clear(out, "2,000")
    assert smollm2.forward_count == before
    _clear(cb.on_steer(1, EMBEDDED_LM, sae, 3, "Hello", "add", 8.0, 500), "new tokens", "80")
    _clear(cb.on_steer(1, EMBEDDED_LM, sae, 3, "Hello", "add", float("nan"), 5), "finite")
    _clear(cb.on_search(1, None, EMBEDDED_LM, None, sae, HUGE, 2000))
    assert smollm2.forward_count == before


# ---- Neurons -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def neurons_cb(dash_app, runtime, smollm2):
    from callbacks import neurons
    from tests.helpers import ensure_index

    ensure_index(runtime)
    return neurons


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
def test_neurons_show_rejects(neurons_cb, model, layer, neuron, words):
    out = neurons_cb.show_neuron(model, layer, neuron, False)
    assert out[10] is True
    _clear(out[9], *words)
    good = neurons_cb.show_neuron(EMBEDDED_LM, "3", 0, False)
    assert good[10] is False and "Layer 3" in good[0]


@pytest.mark.parametrize("token", ["", HUGE, UNICODE, "\x00"])
def test_neurons_search_bad_tokens(neurons_cb, smollm2, token):
    before = smollm2.forward_count
    out = neurons_cb.search(1, None, token, EMBEDDED_LM)
    text = _text(out)
    assert text and UNEXPECTED not in text
    assert smollm2.forward_count == before


def test_neurons_graph_and_compare_bad_indices(neurons_cb):
    fig, _patterns = neurons_cb.show_graph(EMBEDDED_LM, "3", 99999)
    _clear(fig.layout.annotations[0].text, "99999")
    box, _fig = neurons_cb.compare(EMBEDDED_LM, "3", 0, "28", 5)
    _clear(box, "28")


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
