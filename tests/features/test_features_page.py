"""Features page glue: the plain functions behind the callbacks, on the real SmolLM2 + a random SAE."""

from __future__ import annotations

import csv
import io

import pytest

import callbacks.features as cb
from analysis.errors import GlassboxError, InputError
from analysis.jobs import Job
from analysis.settings import EMBEDDED_LM
from tests.helpers import make_sae

TEXT = "The quick brown fox jumps over the lazy dog. Paris is in France."


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory, runtime) -> str:
    return make_sae(tmp_path_factory.mktemp("sae-page") / "rand", seed=1)


def _texts(component) -> str:
    """All text inside a Dash component tree."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_texts(c) for c in component)
    return _texts(getattr(component, "children", None))


def test_dashboard_for_a_local_sae(runtime, sae_dir):
    out = cb.dashboard(EMBEDDED_LM, "user", TEXT, sae_dir, 4, 2000)
    assert out["feature"] == 4 and out["scanned"] is False
    assert "blocks.15.hook_resid_post" in _texts(out["info"])
    strip = _texts(out["strip"])
    assert "Feature 4 on this text" in strip and "fox" in strip
    assert len(out["logits"].data[0].x) == 20
    assert "scan" in _texts(out["examples"])  # no scan yet: it starts by itself
    assert "Similar decoder directions" in _texts(out["decoder"])


def test_dashboard_after_scan_shows_examples_and_histogram(runtime, sae_dir):
    key, _title, work = cb.scan_job(EMBEDDED_LM, sae_dir, 1000)
    assert key.startswith("features-scan:") and work(Job()).n_tokens >= 1000
    out = cb.dashboard(EMBEDDED_LM, "user", TEXT, sae_dir, 4, 1000)
    assert "Top activations" in _texts(out["examples"])
    assert sum(out["hist"].data[0].y) > 0
    assert "Density" in _texts(out["density"])
    assert "Correlated activations" in _texts(out["correlated"]) and "This feature" in _texts(out["explanation"])


def test_no_sae_yet_shows_make_sae(runtime, monkeypatch):
    monkeypatch.setattr(cb, "embedded_sae_exists", lambda _cache: False)
    out = cb.dashboard(EMBEDDED_LM, "user", TEXT, "embedded", 0, 2000)
    assert "make sae" in _texts(out["no_sae"]) and "Train SAE" in _texts(out["no_sae"])


def test_bad_inputs_name_their_bounds(runtime, sae_dir):
    with pytest.raises(InputError, match="from 0 to 95") as bad:
        cb.dashboard(EMBEDDED_LM, "user", TEXT, sae_dir, 500, 2000)
    assert bad.value.field == "features-feature"
    with pytest.raises(InputError, match="Scan tokens"):
        cb.dashboard(EMBEDDED_LM, "user", TEXT, sae_dir, 1, 10)
    with pytest.raises(InputError, match="Scaling"):
        cb.vector_options("decoder", 1.4, True, "abc", 0.0)
    with pytest.raises(InputError, match="placeholder"):
        cb.tree_job(EMBEDDED_LM, sae_dir, 1, "decoder", 1.4, True, 3.8, 0, "no placeholder here", 5, 5e-5, 25)
    with pytest.raises(GlassboxError, match="nope"):  # the page's alert
        cb.on_dashboard(EMBEDDED_LM, "user", TEXT, "nope:nothing/here", 1, None, 2000, "dash")


def test_token_list_csv(runtime, sae_dir):
    rows = cb.token_rows(EMBEDDED_LM, sae_dir, 2, cb.vector_options("decoder", 1.4, True, 3.8, 0.0))
    assert len(rows) == 100 and rows[0]["ratio"] <= rows[-1]["ratio"]
    parsed = list(csv.DictReader(io.StringIO(cb.tokens_csv({"rows": rows, "feature": 2}))))
    assert len(parsed) == 100 and int(parsed[0]["token_id"]) == rows[0]["token_id"]
    assert [p["token"] for p in parsed] == [r["token"] for r in rows]


def test_tree_trim_redraws_without_model(runtime, smollm2, sae_dir):
    _key, _title, work = cb.tree_job(EMBEDDED_LM, sae_dir, 3, "decoder", 1.4, True, 3.8, 0, cb.TreeOptions().prompt,
                                     3, 1e-3, 3)
    store = work(Job())
    before = smollm2.forward_count
    full = cb.trimmed(store, -8)
    trimmed = cb.trimmed(store, -1)
    assert smollm2.forward_count == before
    assert len(trimmed["nodes"]) < len(full["nodes"]) == len(store["tree"]["nodes"])
    assert all(n["cum_prob"] >= 0.1 for n in trimmed["nodes"])
    fig, defs = cb.on_tree_draw(store, -8)
    assert len(fig.data) >= 2 and defs is not None


def test_search_links_to_features(runtime, sae_dir):
    from analysis.features import feature_record

    record = feature_record(runtime, EMBEDDED_LM, sae_dir, 7)
    token = record["logit_effects"]["positive"][0]["token"]
    table = cb.search(EMBEDDED_LM, "user", sae_dir, token, 2000)
    assert "feature=7" in str(table)


def test_your_text_ranks_features(runtime, sae_dir):
    table = cb.text_ranking(EMBEDDED_LM, "user", TEXT, sae_dir)
    text = _texts(table)
    assert "feature=" in str(table) and "max on the text" in text
