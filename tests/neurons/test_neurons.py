"""Neuron index values against a direct forward pass, similarity symmetry, resume, graph, explanations."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import torch

from analysis.capture import capture
from analysis.jobs import Job
from analysis.neurons import QUANTILES, NeuronIndex, NotFound, build_index, neuron_logits, open_index
from tests.helpers import ensure_index, index_config

LAYERS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def index(runtime, smollm2) -> NeuronIndex:
    path = ensure_index(runtime)
    return NeuronIndex(path, smollm2.decode)


@pytest.fixture(scope="module")
def direct(index, smollm2) -> dict:
    """Every row of the index run on its own (no batching, no padding): [rows, T, d_mlp] per layer."""
    rows = [index.row_ids(i) for i in range(index.meta["rows"])]
    sites = [f"blocks.{layer}.mlp.hook_post" for layer in LAYERS]
    acts = {layer: [] for layer in LAYERS}
    for ids in rows:
        cap = capture(smollm2, torch.tensor([ids]), sites, logits=False, stop_early=True)
        for layer in LAYERS:
            acts[layer].append(cap.acts[f"blocks.{layer}.mlp.hook_post"][0].float())
    return {"rows": rows, "acts": acts}


def test_stored_max_equals_recomputed_activation(index, direct):
    for layer in LAYERS:
        per_row = direct["acts"][layer]
        corpus_max = torch.stack([a.max(0).values for a in per_row]).max(0).values  # [d_mlp]
        stored = torch.tensor([r["max_act"] for r in index.ranked(layer, "max", 5000)])
        order = [r["unit"] for r in index.ranked(layer, "max", 5000)]
        # every unit's stored max is the true corpus max
        assert torch.allclose(stored, corpus_max[order], rtol=1e-3, atol=1e-3)
        for unit in (0, 17, order[0], order[-1]):
            rec = index.unit(layer, unit)
            top = rec.snippets[0]
            assert top.act == pytest.approx(float(per_row[top.row_id][top.pos, unit]), rel=1e-3, abs=1e-3)
            # the window's per-token activations are the recomputed ones (fp16 storage)
            want = per_row[top.row_id][top.start : top.start + len(top.acts), unit]
            assert np.allclose(np.array(top.acts, dtype=np.float32), want.numpy(), rtol=1e-2, atol=1e-2)
            assert top.tokens == index.decode(direct["rows"][top.row_id][top.start : top.start + len(top.acts)])
            # top-k rows = the k rows with the highest row max, in order
            row_max = torch.stack([a[:, unit].max() for a in per_row])
            best = torch.topk(row_max, len(rec.snippets)).values
            assert np.allclose([s.act for s in rec.snippets], best.numpy(), rtol=1e-3, atol=1e-3)


def test_quantiles_mean_density_and_top_tokens(index, direct):
    layer = 2
    cfg = index.meta["config"]
    batch, every = cfg["batch_size"], cfg["stat_every"]
    # the histogram/mean/density see every stat_every-th valid token of each batch (row-major)
    per_batch = [torch.cat(direct["acts"][layer][i : i + batch])[::every] for i in range(0, len(direct["rows"]), batch)]
    sub = torch.cat(per_batch)
    flat = torch.cat(direct["acts"][layer])
    for unit in (3, 100, 1000):
        rec = index.unit(layer, unit)
        col = sub[:, unit]
        assert rec.mean_act == pytest.approx(float(col.mean()), abs=1e-4)
        assert rec.frac_pos == pytest.approx(float((col > 0).float().mean()), abs=1e-6)
        assert rec.min_act == pytest.approx(float(flat[:, unit].min()), abs=1e-4)  # min and max see every token
        assert rec.quantiles["1.0"] == pytest.approx(float(flat[:, unit].max()), abs=1e-4)
        for q in (0.1, 0.5, 0.9):
            exact = float(torch.quantile(col, q))
            spread = float(col.max() - col.min())
            assert rec.quantiles[str(q)] == pytest.approx(exact, abs=0.06 * abs(exact) + 0.05 * spread + 1e-3)
        # top tokens: the token carrying each row's max, over the top_tokens_k rows with the highest max
        row_max = torch.stack([a[:, unit].max() for a in direct["acts"][layer]])
        counts: dict[int, int] = {}
        for r in torch.topk(row_max, min(cfg["top_tokens_k"], len(row_max))).indices.tolist():
            tok = direct["rows"][r][int(direct["acts"][layer][r][:, unit].argmax())]
            counts[tok] = counts.get(tok, 0) + 1
        assert rec.top_tokens[0]["count"] == max(counts.values())
        assert sum(t["count"] for t in rec.top_tokens) == sum(sorted(counts.values(), reverse=True)[: len(rec.top_tokens)])
        assert all(counts[t["token_id"]] == t["count"] for t in rec.top_tokens)
    assert set(rec.quantiles) == {str(q) for q in QUANTILES}


def test_similarity_is_symmetric(index):
    pairs = [((0, 5), (3, 9)), ((1, 100), (1, 200)), ((2, 7), (0, 7))]
    for a, b in pairs:
        ab, ba = index.similarity(a, b), index.similarity(b, a)
        assert ab["cosine"] == pytest.approx(ba["cosine"], abs=1e-6)
        assert ab["jaccard"] == ba["jaccard"]
    assert index.similarity((2, 7), (2, 7))["cosine"] == pytest.approx(1.0, abs=1e-5)
    sims = index.similar(1, 100, 5)
    assert len(sims) == 5 and all(s["unit"] != 100 or s["layer"] != 1 for s in sims)
    assert [s["similarity"] for s in sims] == sorted([s["similarity"] for s in sims], reverse=True)
    for s in sims:  # the listed score is the pairwise one, both ways
        back = index.similarity((s["layer"], s["unit"]), (1, 100))["cosine"]
        assert back == pytest.approx(s["similarity"], abs=1e-5)
    for s in index.similar(1, 100, 5, "jaccard"):
        assert index.similarity((s["layer"], s["unit"]), (1, 100))["jaccard"] == pytest.approx(s["similarity"])


def test_unknown_layer_and_neuron(index):
    with pytest.raises(NotFound, match="0..3"):
        index.unit(7, 0)
    with pytest.raises(NotFound, match="0..1535"):
        index.unit(1, 1536)


def test_resume_gives_the_same_index(runtime, index, tmp_path):
    path = tmp_path / "resume.sqlite"
    job = Job()
    calls = {"n": 0}

    def stop_after_one() -> bool:  # the one cancel rule: asked before every batch
        calls["n"] += 1
        if calls["n"] > 1:
            job.cancel()
        return job._stop.is_set()

    job.should_stop = stop_after_one  # type: ignore[method-assign]
    build_index(runtime, index_config(), job, path=path)
    half = NeuronIndex(path)
    assert half.meta["status"] == "stopped" and not half.complete
    assert half._query("SELECT COUNT(*) FROM batches")[0][0] == 1
    half.close()
    build_index(runtime, index_config(), path=path)
    again = NeuronIndex(path)
    assert again.complete
    for table, cols in (("units", "grp, unit, max_act, min_act, mean_act, frac_pos, top_tokens"),
                        ("snippets", "grp, unit, rank, row_id, pos, act")):
        a = again._query(f"SELECT {cols} FROM {table} ORDER BY grp, unit" + (", rank" if table == "snippets" else ""))
        b = index._query(f"SELECT {cols} FROM {table} ORDER BY grp, unit" + (", rank" if table == "snippets" else ""))
        assert len(a) == len(b)
        for ra, rb in zip(a, b, strict=True):
            assert ra[:2] == rb[:2]
            assert np.allclose([x for x in ra[2:] if isinstance(x, float)], [x for x in rb[2:] if isinstance(x, float)],
                               atol=1e-4)


def test_search_by_token(index):
    rec = index.unit(3, 11)
    tid = rec.top_tokens[0]["token_id"]
    found = index.units_for_tokens([tid], limit=5000)
    assert any(r["layer"] == 3 and r["unit"] == 11 for r in found)
    assert all(r["token_id"] == tid for r in found)
    counts = [r["count"] for r in found]
    assert counts == sorted(counts, reverse=True)


def test_logit_effects_match_manual(smollm2):
    out = neuron_logits(smollm2, 2, 42, k=5)
    model = smollm2.model
    w = model.model.layers[2].mlp.down_proj.weight[:, 42].float() * model.model.norm.weight.float()
    logits = model.lm_head.weight.float() @ w
    assert [t["token_id"] for t in out["positive"]] == torch.topk(logits, 5).indices.tolist()
    assert [t["token_id"] for t in out["negative"]] == torch.topk(-logits, 5).indices.tolist()
    assert out["positive"][0]["logit"] == pytest.approx(float(logits.max()), rel=1e-4)


def test_pattern_graph_reproduces_pruned_activation(runtime, index, smollm2):
    from analysis.io import special_prefix
    from analysis.neurons.graph import neuron_graph, unit_activations

    layer, unit = 3, index.ranked(3, "max", 1)[0]["unit"]
    snippets = index.snippets(layer, unit, 3)
    rows = {s.row_id: index.row_ids(s.row_id) for s in snippets}
    data = neuron_graph(smollm2, f"blocks.{layer}.mlp.hook_post", unit, snippets, rows, special_prefix(smollm2.tokenizer))
    assert data["patterns"], "positive snippets give patterns"
    for p, s in zip(data["patterns"], snippets, strict=False):
        ctx = rows[s.row_id][s.pos - p["context_len"] + 1 : s.pos + 1]
        again = unit_activations(smollm2, f"blocks.{layer}.mlp.hook_post", unit, [ctx])[0]
        assert again == pytest.approx(p["pruned_act"], rel=1e-3, abs=1e-3)  # batched == single
        assert p["pruned_act"] >= 0.5 * p["act"] or p["context_len"] == min(24, s.pos + 1)
        assert p["tokens"][-1] == index.decode([rows[s.row_id][s.pos]])[0]
    roots = {n["token"] for n in data["graph"]["nodes"] if n["depth"] == 0}
    assert roots == {p["tokens"][-1] for p in data["patterns"]}


class _FakeLLM(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeLLM.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        payload = json.dumps({"choices": [{"message": {"content": " Fires on list separators. "}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # quiet
        pass


def test_explanations_summary_and_llm_request(index, settings):
    from analysis.explain import show
    from analysis.neurons.explain import unit_llm_explanation as llm_explanation
    from analysis.neurons.explain import unit_summary as summary_text

    rec = index.unit(2, 5)
    text = summary_text(rec)
    first = rec.top_tokens[0]
    assert f"'{show(first['token'])}' ({first['count']})" in text and f"{rec.max_act:.3g}" in text
    assert "\\n" not in text  # newlines read as ↵, never a literal backslash-n
    assert llm_explanation(settings, rec) is None  # off by default
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = settings.replace(openai_base_url=f"http://127.0.0.1:{server.server_port}/v1", openai_api_key="k123",
                               openai_model="tiny-model")
        assert llm_explanation(cfg, rec) == "Fires on list separators."
    finally:
        server.shutdown()
    seen = _FakeLLM.seen[-1]
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k123"
    assert seen["body"]["model"] == "tiny-model"
    user = seen["body"]["messages"][1]["content"]
    assert "<<" in user and f"{rec.snippets[0].act:.2f}" in user


def test_callbacks_render_a_neuron(runtime, index):
    from analysis.errors import GlassboxError
    from callbacks.neurons import ranked_options, search, show_compare, show_neuron, try_text
    from components.neurons_view import neuron_href

    model = index.model_id
    open_index(runtime, model, index.index_id)
    out = show_neuron(model, "2", 5, False, None)
    assert "Layer 2" in out[0]
    snippets = out[3]
    assert len(snippets.children) == len(index.snippets(2, 5)) + 1  # + the line stating the colour scale
    assert "site=mlp.hook_post" in out[8] and "dim=5" in out[8]  # the neuron on a text, in Tokens
    show_neuron(model, "2", 5, True, None)
    opts, shown = ranked_options(model, "2", "range", 5, None)
    assert opts and isinstance(opts[0]["value"], int)
    top = opts[0]["value"]
    assert ranked_options(model, "2", "range", top, None)[1] == top  # the picker follows the typed neuron
    res = search(1, None, "the", model)
    assert "/neurons?" in str(res) or "No neuron" in str(res)
    cmp_view, fig, shown = show_compare(model, "2", 5, "3", 9)
    assert "cosine" in str(cmp_view) and shown == {}
    assert show_compare(model, "2", 5, "3", None)[2] == {"display": "none"}  # no empty figure box without a pair
    with pytest.raises(NotFound, match="0..1535"):
        show_neuron(model, "2", 99999, False, None)
    with pytest.raises(GlassboxError, match="Layer .* must be a whole number") as bad:
        show_neuron(model, "abc", 5, False, None)
    assert bad.value.field == "neurons-layer"
    assert neuron_href(model, 2, 5).startswith("/neurons?model=")
    with pytest.raises(GlassboxError, match="No neuron index .* default build"):
        show_neuron("embedded:all-minilm-l6-v2", None, 0, False, None)
    tried = try_text(1, None, model, "2", 5, "The cat sat on the mat.")
    assert "max on this text" in str(tried)


def test_whole_rows_match_the_window(runtime, index):
    from analysis.neurons import unit_on_text, whole_rows

    opened = open_index(runtime, index.model_id, index.index_id)
    rows = whole_rows(runtime, index.model_id, 1, 33, opened.index_id)
    snippets = index.snippets(1, 33)
    for row, s in zip(rows, snippets, strict=True):
        assert row["acts"][s.pos] == pytest.approx(s.act, rel=1e-3, abs=1e-3)
        assert row["tokens"][s.start : s.start + len(s.tokens)] == s.tokens
    text = runtime.text(None, "Paris is the capital of France.")
    mine = unit_on_text(runtime, index.model_id, 1, 33, text)
    direct = runtime.run(index.model_id, text, ["blocks.1.mlp.hook_post"]).act("blocks.1.mlp.hook_post")[:, 33]
    assert mine["acts"] == pytest.approx(direct.tolist(), abs=1e-6)


def test_page_build_job_reports_progress(runtime, smollm2):
    """The page's build job (run in the runtime's job registry, as the page does) builds a tiny index and
    reports every phase, with throughput and ETA while it runs; a second start joins the same job."""
    from analysis.neurons import IndexConfig, index_path
    from callbacks.neurons import build_job, refresh_index

    cfg = IndexConfig(model_id=smollm2.model_id, corpus="fortunes", n_tokens=96, layers=[0])
    for leftover in index_path(runtime, cfg).parent.glob(index_path(runtime, cfg).stem + "*"):
        leftover.unlink()  # a kept test cache (GLASSBOX_TEST_CACHE_DIR) holds the last run's index
    key, title, work = build_job(smollm2.model_id, "fortunes", 96, "0")
    reports = []
    status = runtime.jobs.start(key, title, lambda job: (setattr(job, "_min_interval", 0),
                                                        setattr(job, "_on_progress", _both(job._on_progress, reports.append)),
                                                        work(job))[-1])
    assert runtime.jobs.start(key, title, work) is status  # single flight: a second visitor joins
    runtime.jobs.wait(key, 300)
    assert status.state == "done", status.error
    phases = [p.phase for p in reports]
    assert phases[0].startswith("loading") or "packing the corpus" in phases
    assert any(p.startswith("running") for p in phases) and "writing the index" in phases
    running = [p for p in reports if p.phase.startswith("running") and p.done]
    assert running[-1].unit == "tokens" and running[-1].done == running[-1].total
    summary, layers, chosen, _key, _poll = refresh_index(smollm2.model_id, None, None)
    assert any(o["value"] == "0" for o in layers) and "fortunes" in str(summary)
    bad_key, bad_title, bad_work = build_job(smollm2.model_id, "nonsense-corpus", 96, "0")
    failed = runtime.jobs.start(bad_key, bad_title, bad_work)
    runtime.jobs.wait(bad_key, 60)
    assert failed.state == "failed" and "nonsense-corpus" in failed.error
    from analysis.errors import InputError

    for tokens, words in ((3000, None), (2000, None), ("abc", "whole number from 16"), (5, "from 16 to")):
        if words is None:
            assert build_job(smollm2.model_id, "training", tokens, "")[0].startswith("neurons-build:")  # round numbers
        else:
            with pytest.raises(InputError, match=words):
                build_job(smollm2.model_id, "training", tokens, "")
    with pytest.raises(InputError, match="Layers must be a whole number from 0 to 29; got 'abc'"):
        build_job(smollm2.model_id, "training", 3000, "abc")


def _both(first, second):
    def call(progress):
        if first is not None:
            first(progress)
        second(progress)

    return call


def test_sites_without_a_hook_edit_are_folded_in_after_the_pass(smollm2):
    """Groups on a site that capture cannot edit (here hook_resid_mid) are captured and folded in after
    the forward; groups on editable sites are folded in during it. Both equal a direct capture."""
    from analysis.neurons import Group, IndexConfig, Scanner, make_batches, mlp_group

    rows = [list(range(100, 100 + n)) for n in (12, 9, 12, 7)]
    groups = [Group(name="mid1", kind="mlp", site="blocks.1.hook_resid_mid", width=smollm2.info.d_model, layer=1),
              mlp_group(2, smollm2.info.d_mlp)]
    cfg = IndexConfig(model_id="test", top_k=3, before=2, after=1, sample_tokens=16, batch_size=2)
    scanner = Scanner(smollm2, cfg, groups, sum(len(r) for r in rows))
    with torch.inference_mode():
        for row_ids, ids, mask in make_batches(rows, 2, 0):  # resid_mid is not observable in the pass
            scanner.step(row_ids, ids, mask)
    for g in groups:
        direct = [capture(smollm2, torch.tensor([r]), [g.site], logits=False).acts[g.site][0].float() for r in rows]
        row_max = torch.stack([a.max(0).values for a in direct])  # [rows, width]
        vals, top_rows, pos, wins = scanner.states[g.name].top(torch.tensor([len(r) for r in rows]))
        assert torch.allclose(vals, torch.topk(row_max, 3, dim=0).values, rtol=1e-4, atol=1e-4)
        unit = int(row_max.max(0).values.argmax())
        r, p = int(top_rows[0, unit]), int(pos[0, unit])
        want = [float(direct[r][q, unit]) if 0 <= q < len(rows[r]) else float("nan") for q in range(p - 2, p + 2)]
        assert np.allclose(wins[0, :, unit].numpy(), want, rtol=1e-4, atol=1e-4, equal_nan=True)
