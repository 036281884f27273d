"""Features glue: SAE + feature -> dashboard; your text; token lists; definition tree; steering; search.

Each callback calls a plain function below (tested directly), which calls ``analysis.features`` and renders
with ``components.features_*``. Errors go to the field or the page's alert (``callbacks.common``). The
corpus scan and the definition tree run as server jobs (one per key: two users share one scan).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from dash import ALL, Input, Output, State, callback, ctx, dcc, no_update

from analysis.errors import GlassboxError, InputError
from analysis.features import (
    DEFAULT_TOKENS,
    EMBEDDED_SAE,
    MAX_TOKENS,
    SAETrainOptions,
    TreeOptions,
    VectorOptions,
    activation_neighbours,
    build_tree,
    cached_scan,
    decoder_neighbours,
    definitions,
    density_from_training,
    embedded_sae_exists,
    embedding_stats,
    feature_edit_effect,
    feature_explanation,
    feature_stats,
    generate_steered,
    get_scan,
    log10_density,
    logit_effects,
    no_sae_message,
    resolve,
    search_features,
    text_activations,
    token_list,
    train_sae,
    tree_layout,
)
from analysis.params import parse_bool, parse_choice, parse_float, parse_int
from analysis.runtime import get_runtime
from callbacks.common import page_callback, register_job, register_picker_callbacks
from callbacks.edits import edits_input, page_edits
from callbacks.shell import register_model_loading
from components import features_figures as figures
from components import features_view as view
from components.figures import empty_figure

P = "features"
register_picker_callbacks(P)
register_model_loading(P)


def _feature(value: Any, d_sae: int) -> int:
    return parse_int(value, "Feature", 0, d_sae - 1, default=0, field=f"{P}-feature")


def _scan_tokens(value: Any) -> int:
    return parse_int(value, "Scan tokens", 1000, MAX_TOKENS, default=DEFAULT_TOKENS, field=f"{P}-scan-tokens")


def vector_options(kind: Any, exponent: Any, offset: Any, scale: Any, pca: Any) -> VectorOptions:
    """The ghost-token controls: an empty scaling means the model's rho (a typical token's distance)."""
    return VectorOptions(kind=parse_choice(kind or "decoder", "Vector", ("decoder", "encoder")),
                         exponent=parse_float(exponent, "Exponent m", 0, 10, field=f"{P}-exponent"),
                         centroid_offset=parse_bool(offset, "Centroid offset", default=True),
                         scale=parse_float(scale, "Scaling s", 0, 1000, default=None, low_open=True, field=f"{P}-scale"),
                         pca_weight=parse_float(pca, "PCA-1 weight w", -10, 10, default=0.0, field=f"{P}-pca")).check()


def feature_href(model: str, sample: str | None, sae_ref: str | None, feature: int, tab: str = "dash") -> str:
    return "/features?" + urlencode({"model": model, "sample": sample or "", "sae": sae_ref or EMBEDDED_SAE,
                                     "feature": feature, "tab": tab})


# ---- dashboard ---------------------------------------------------------------------------------

def dashboard(model: str, sample: str | None, user_text: str | None, sae_ref: str | None, feature: Any,
              scan_tokens: Any) -> dict[str, Any]:
    """Everything the dashboard tab shows for one (model, text, SAE, feature)."""
    runtime = get_runtime()
    sae_ref = (sae_ref or EMBEDDED_SAE).strip()
    if sae_ref == EMBEDDED_SAE and not embedded_sae_exists(runtime.settings.cache_dir):
        return {"no_sae": view.no_sae_note(no_sae_message(runtime))}
    lm, sae = resolve(runtime, model, sae_ref)
    f = _feature(feature, sae.d_sae)
    n_scan = _scan_tokens(scan_tokens)
    text = runtime.text(sample, user_text, field=f"{P}-text")
    acts = text_activations(runtime, model, sae, text)
    effects = logit_effects(lm, sae, f)
    train_density = density_from_training(sae)
    scan = cached_scan(runtime, model, sae, n_scan)
    href = lambda g: feature_href(model, sample, sae_ref, g)  # noqa: E731
    decoder = [{"feature": g, "cosine": c} for g, c in decoder_neighbours(runtime, sae, f)]
    out: dict[str, Any] = {
        "info": view.sae_info({"ref": sae.ref, "d_sae": sae.d_sae, "d_in": sae.d_in, "site": sae.site,
                               "hook_name": sae.hook_name, "metrics": sae.meta, "path": sae.path}),
        "strip": view.token_strip(acts.tokens, acts.feature(f), f, acts.outside),
        "badges": view.top_feature_badges(acts.top_features(16), f),
        "logits": figures.logit_figure([(t.token, t.logit) for t in effects.positive],
                                       [(t.token, t.logit) for t in effects.negative], f),
        "feature": f,
        "decoder": view.neighbours_table("Similar decoder directions", decoder, "cosine",
                                         [href(r["feature"]) for r in decoder], "features-similar-decoder"),
        "scanned": scan is not None,
    }
    if scan is None:
        out["examples"] = view.html.Div(
            f"Top activations, correlations and the explanation need the corpus scan ({n_scan:,} held-out tokens, "
            "run once and cached on disk): it starts by itself; its progress is above.", className="text-muted small",
            id="features-scan-needed")
        out["hist"] = empty_figure("The activation histogram appears when the scan is done.")
        if train_density is not None:
            log_train = log10_density(train_density)
            out["density_fig"] = figures.density_figure(log_train, log_train[f], f)
        else:
            out["density_fig"] = empty_figure("Feature densities follow the scan.")
        out["density"] = view.density_line(None, float(train_density[f]) if train_density is not None else None, None)
        out["correlated"] = view.neighbours_table("Correlated activations", [], "correlation", [], "features-correlated")
        out["explanation"] = view.explanation_box(None)
    else:
        stats = feature_stats(lm, scan, f)
        logd = log10_density(scan.density())
        correlated = [{"feature": g, "correlation": c} for g, c in activation_neighbours(runtime, scan, f)]
        out["examples"] = view.examples_section(asdict(stats))
        out["hist"] = figures.histogram_figure(stats.hist_counts, stats.hist_edges, f, scan.n_tokens)
        out["density_fig"] = figures.density_figure(logd, logd[f], f)
        out["density"] = view.density_line(stats.density, float(train_density[f]) if train_density is not None else None,
                                           scan.n_tokens)
        out["correlated"] = view.neighbours_table("Correlated activations (over the scan)", correlated, "correlation",
                                                  [href(r["feature"]) for r in correlated], "features-correlated")
        out["explanation"] = view.explanation_box(feature_explanation(runtime, stats, f, llm=False))
    return out


DASH_OUTPUTS = ["info", "strip", "badges", "logits", "hist", "density_fig", "density", "examples", "decoder",
                "correlated", "explanation"]


@page_callback(
    P, Output(f"{P}-info", "children"), Output(f"{P}-strip-box", "children"), Output(f"{P}-badges", "children"),
    Output(f"{P}-logits", "figure"), Output(f"{P}-hist", "figure"), Output(f"{P}-density-fig", "figure"),
    Output(f"{P}-density-box", "children"), Output(f"{P}-examples", "children"), Output(f"{P}-decoder", "children"),
    Output(f"{P}-correlated", "children"), Output(f"{P}-explanation", "children"),
    Output({"type": "url-state", "page": P}, "data"), Output(f"{P}-no-sae", "children"),
    Output(f"{P}-scan-key", "data", allow_duplicate=True), Output(f"{P}-scan-poll", "disabled", allow_duplicate=True),
    Input(f"{P}-model", "value"), Input(f"{P}-sample", "value"), Input(f"{P}-text", "value"),
    Input(f"{P}-sae", "value"), Input(f"{P}-feature", "value"), Input(f"{P}-scan-done", "data"),
    State(f"{P}-scan-tokens", "value"), State(f"{P}-tab", "active_tab"), prevent_initial_call="initial_duplicate",
)
def on_dashboard(model, sample, text, sae_ref, feature, _done, scan_tokens, tab):
    state = {"model": model, "sample": sample, "sae": sae_ref, "feature": feature, "tab": tab}
    out = dashboard(model, sample, text, sae_ref, feature, scan_tokens)
    if "no_sae" in out:  # the dashboard's boxes say what they wait for (not blank cards)
        waiting = empty_figure("The dashboard needs an SAE: train one (below) or load one above.")
        blank = {"logits": waiting, "hist": waiting, "density_fig": waiting}
        return (*[blank.get(k) for k in DASH_OUTPUTS], state, out["no_sae"], no_update, no_update)
    scan_key, poll_off = no_update, no_update
    if not out["scanned"]:  # first visit: the scan starts by itself (one job per model, SAE and budget)
        made = scan_job(model, sae_ref, scan_tokens)
        get_runtime().jobs.start(*made)
        scan_key, poll_off = made[0], False
    return (*[out[k] for k in DASH_OUTPUTS], state, None, scan_key, poll_off)


@callback(Output(f"{P}-feature", "value"), Input({"type": "features-pick", "index": ALL}, "n_clicks"),
          prevent_initial_call=True)
def on_pick(clicks):
    if not ctx.triggered_id or not any(clicks or []):
        return no_update
    return ctx.triggered_id["index"]


def scan_job(model: str, sae_ref: str | None, scan_tokens: Any, *_triggers: Any) -> tuple[str, str, Any]:
    """The corpus scan as a server job (same function as ``python -m analysis.features.scan``)."""
    runtime = get_runtime()
    _lm, sae = resolve(runtime, model, sae_ref)
    n = _scan_tokens(scan_tokens)
    key = f"features-scan:{model}:{sae.ref}:{sae.path}:{n}"
    return key, f"Scanning {n:,} held-out tokens for {sae.d_sae:,} features", lambda job: get_scan(runtime, model, sae, n, job)


register_job(P, f"{P}-scan", [State(f"{P}-model", "value"), State(f"{P}-sae", "value"),
                              State(f"{P}-scan-tokens", "value")], scan_job,
             lambda scan: f"Scanned {scan.n_tokens:,} tokens in {scan.seconds:.0f} s (cached on disk).")


# ---- the shared edit list ------------------------------------------------------------------------

@page_callback(P, Output("shell-edits", "value", allow_duplicate=True), Input(f"{P}-ablate", "n_clicks"),
               State(f"{P}-sae", "value"), State(f"{P}-feature", "value"), State("shell-edits", "value"),
               prevent_initial_call=True)
def on_ablate(_clicks: int, sae_ref: str | None, feature: Any, current: str | None) -> str:
    """Add this feature's ablation to the shared edit list (every edit-aware page then shows its effect)."""
    unit = parse_int(feature, "Feature", 0, None, field=f"{P}-feature")
    item = f"feature[{(sae_ref or EMBEDDED_SAE).strip()}]:F{unit}"
    items = [part.strip() for part in (current or "").split(";") if part.strip()]
    return ";".join(items if item in items else [*items, item])


def edit_effect(model: str, sample: str | None, text: str | None, sae_ref: str | None, feature: Any,
                store: dict | None) -> Any:
    """The feature on this text, clean vs with the shared edit list (max and mean |delta| over tokens)."""
    runtime = get_runtime()
    edits = page_edits(runtime, model, store)
    if not edits:
        return None
    _lm, sae = resolve(runtime, model, sae_ref)
    unit = parse_int(feature, "Feature", 0, sae.d_sae - 1, field=f"{P}-feature")
    body = runtime.text(sample, text, field=f"{P}-text")
    effect = feature_edit_effect(runtime, model, sae, body, unit, edits)
    return None if effect is None else view.edit_effect_line(**effect)


@page_callback(P, Output(f"{P}-edit-effect", "children"), Input(f"{P}-model", "value"), Input(f"{P}-sample", "value"),
               Input(f"{P}-text", "value"), Input(f"{P}-sae", "value"), Input(f"{P}-feature", "value"), edits_input())
def on_edit_effect(model, sample, text, sae_ref, feature, store):
    return edit_effect(model, sample, text, sae_ref, feature, store)


# ---- your text -------------------------------------------------------------------------------------

def text_ranking(model: str, sample: str | None, user_text: str | None, sae_ref: str | None) -> Any:
    """The features most active on the text (the prompt-centric view), each linking to its dashboard."""
    runtime = get_runtime()
    _lm, sae = resolve(runtime, model, sae_ref)
    acts = text_activations(runtime, model, sae, runtime.text(sample, user_text, field=f"{P}-text"))
    rows = acts.ranking(30)
    return view.ranking_table(rows, [feature_href(model, sample, sae_ref, r["feature"]) for r in rows])


@page_callback(P, Output(f"{P}-ranking-box", "children"), Input(f"{P}-tab", "active_tab"),
               Input(f"{P}-model", "value"), Input(f"{P}-sample", "value"), Input(f"{P}-text", "value"),
               Input(f"{P}-sae", "value"))
def on_ranking(tab, model, sample, text, sae_ref):
    if tab != "text":
        return no_update
    return text_ranking(model, sample, text, sae_ref)


# ---- token lists -------------------------------------------------------------------------------

def token_rows(model: str, sae_ref: str | None, feature: Any, options: VectorOptions) -> list[dict[str, Any]]:
    runtime = get_runtime()
    lm, sae = resolve(runtime, model, sae_ref)
    result = token_list(runtime, lm, sae, _feature(feature, sae.d_sae), options, top=100)
    return [{"token": t, "token_id": i, "ratio": r, "cos_v": cv, "cos_c": cc}
            for t, i, r, cv, cc in zip(result.tokens, result.token_ids, result.ratio, result.cos_v, result.cos_c,
                                       strict=True)]


VECTOR_STATES = [State(f"{P}-{name}", "value") for name in ("kind", "exponent", "offset", "scale", "pca")]


@page_callback(P, Output(f"{P}-tokens-box", "children"), Output(f"{P}-tokens-store", "data"),
               Input(f"{P}-tokens-run", "n_clicks"), State(f"{P}-model", "value"), State(f"{P}-sae", "value"),
               State(f"{P}-feature", "value"), *VECTOR_STATES, prevent_initial_call=True)
def on_tokens(_clicks, model, sae_ref, feature, kind, exponent, offset, scale, pca):
    rows = token_rows(model, sae_ref, feature, vector_options(kind, exponent, offset, scale, pca))
    return [view.token_cloud(rows), view.token_table(rows)], {"rows": rows, "feature": feature}


@page_callback(P, Output(f"{P}-rho", "children"), Input(f"{P}-model", "value"))
def on_rho(model):
    """The model's typical distance from the embedding centroid, beside the scaling control (its default)."""
    runtime = get_runtime()
    lm = runtime.model(model)
    if not lm.info.is_causal:
        return ""
    stats = embedding_stats(runtime, lm)
    return (f"empty = ρ = {stats.rho:.2f}, this model's mean token distance from the embedding centroid "
            f"(mean |e| = {stats.mean_norm:.2f}); the original notebook's 3.8 was Gemma-2B's ρ")


def tokens_csv(store: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "token_id", "token", "ratio", "cos_v", "cos_c"])
    for i, r in enumerate(store["rows"]):
        writer.writerow([i + 1, r["token_id"], r["token"], f"{r['ratio']:.6g}", f"{r['cos_v']:.6g}", f"{r['cos_c']:.6g}"])
    return buffer.getvalue()


@callback(Output(f"{P}-tokens-download", "data"), Input(f"{P}-tokens-csv", "n_clicks"),
          State(f"{P}-tokens-store", "data"), prevent_initial_call=True)
def on_tokens_csv(_clicks, store):
    if not store:
        return no_update
    return dcc.send_string(tokens_csv(store), f"feature-{store['feature']}-tokens.csv")


# ---- definition tree ---------------------------------------------------------------------------

def tree_options(prompt: str, top_k: Any, cutoff: Any, depth: Any) -> TreeOptions:
    return TreeOptions(prompt=prompt or "", top_k=parse_int(top_k, "Top-k", 1, 10, field=f"{P}-topk"),
                       cutoff=parse_float(cutoff, "Cum. prob. cut-off", 1e-8, 1, high_open=True, field=f"{P}-cutoff"),
                       max_depth=parse_int(depth, "Max depth", 1, 40, field=f"{P}-depth")).check()


def tree_job(model: str, sae_ref: str | None, feature: Any, kind: Any, exponent: Any, offset: Any, scale: Any,
             pca: Any, prompt: str, top_k: Any, cutoff: Any, depth: Any, *_triggers: Any) -> tuple[str, str, Any]:
    """(key, title, work) of one definition tree (a server job; its result is the tree as plain data)."""
    runtime = get_runtime()
    lm, sae = resolve(runtime, model, sae_ref)
    f = _feature(feature, sae.d_sae)
    vector = vector_options(kind, exponent, offset, scale, pca)
    options = tree_options(prompt, top_k, cutoff, depth)

    def work(job: Any) -> dict[str, Any]:
        tree = build_tree(runtime, lm, sae, f, vector, options, job)
        return {"tree": tree.as_dict(), "layout": tree_layout(tree), "definitions": definitions(tree)}

    key = "features-tree:" + json.dumps([model, sae.ref, f, asdict(vector), asdict(options)], sort_keys=True)
    return key, f"Definition tree of feature {f}", work


def describe_tree(data: dict[str, Any]) -> str:
    tree = data["tree"]
    return (f"{len(tree['nodes']) - 1} nodes in {tree['seconds']:.1f} s ({tree['forwards']} batched forwards)"
            + (" — node limit reached" if tree["truncated"] else ""))


register_job(P, f"{P}-tree", [State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-feature", "value"),
                              *VECTOR_STATES, State(f"{P}-prompt", "value"), State(f"{P}-topk", "value"),
                              State(f"{P}-cutoff", "value"), State(f"{P}-depth", "value")], tree_job, describe_tree)


@page_callback(P, Output(f"{P}-tree-store", "data"), Input(f"{P}-tree-done", "data"), prevent_initial_call=True)
def on_tree_done(done):
    status = get_runtime().jobs.status(done["key"]) if done else None
    if status is None or status.state != "done":
        return no_update
    return status.result


def trimmed(store: dict[str, Any], trim: float) -> dict[str, Any]:
    """Re-layout the stored tree keeping paths with cumulative probability >= 10**trim (no model call)."""
    from analysis.features import DefinitionTree, TreeNode

    t = store["tree"]
    tree = DefinitionTree(nodes=[TreeNode(**n) for n in t["nodes"]], prompt=t["prompt"], feature=t["feature"],
                          seconds=t["seconds"], forwards=t["forwards"], truncated=t["truncated"])
    return tree_layout(tree, min_prob=10.0 ** trim)


@callback(Output(f"{P}-tree", "figure"), Output(f"{P}-definitions", "children"),
          Input(f"{P}-tree-store", "data"), Input(f"{P}-trim", "value"))
def on_tree_draw(store, trim):
    if not store:
        return empty_figure("Press 'Build tree' to expand the ghost token's definitions"), None
    layout = trimmed(store, float(trim if trim is not None else -5))
    return figures.tree_figure(layout), view.definitions_list([tuple(d) for d in store["definitions"]])


@callback(Output(f"{P}-tree-download", "data"), Input(f"{P}-tree-json", "n_clicks"), State(f"{P}-tree-store", "data"),
          prevent_initial_call=True)
def on_tree_json(_clicks, store):
    if not store:
        return no_update
    return dcc.send_string(json.dumps(store["tree"], indent=1), f"feature-{store['tree']['feature']}-tree.json")


# ---- steering and search -----------------------------------------------------------------------

def steer(model: str, sae_ref: str | None, feature: Any, prompt: str, mode: str, strength: Any, n_new: Any) -> dict:
    lm, sae = resolve(get_runtime(), model, sae_ref)
    f = _feature(feature, sae.d_sae)
    result = generate_steered(lm, sae, f, prompt or "", mode=mode or "add",
                              strength=parse_float(strength, "Strength", -1000, 1000, field=f"{P}-steer-strength"),
                              max_new_tokens=parse_int(n_new, "New tokens", 1, 80, field=f"{P}-steer-n"))
    return asdict(result)


@page_callback(P, Output(f"{P}-steer-box", "children"), Input(f"{P}-steer-run", "n_clicks"),
               State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-feature", "value"),
               State(f"{P}-steer-prompt", "value"), State(f"{P}-steer-mode", "value"),
               State(f"{P}-steer-strength", "value"), State(f"{P}-steer-n", "value"), prevent_initial_call=True)
def on_steer(_clicks, model, sae_ref, feature, prompt, mode, strength, n_new):
    return view.steering_output(steer(model, sae_ref, feature, prompt, mode, strength, n_new))


def search(model: str, sample: str | None, sae_ref: str | None, token: str, scan_tokens: Any) -> Any:
    shown, hits = search_features(get_runtime(), model, (sae_ref or EMBEDDED_SAE).strip(), token or "",
                                  _scan_tokens(scan_tokens))
    rows = [asdict(h) for h in hits]
    return view.search_table(shown, rows, [feature_href(model, sample, sae_ref, h.feature) for h in hits])


@page_callback(P, Output(f"{P}-search-box", "children"), Input(f"{P}-search-run", "n_clicks"),
               Input(f"{P}-search-token", "n_submit"), State(f"{P}-model", "value"), State(f"{P}-sample", "value"),
               State(f"{P}-sae", "value"), State(f"{P}-search-token", "value"), State(f"{P}-scan-tokens", "value"),
               prevent_initial_call=True)
def on_search(_clicks, _submit, model, sample, sae_ref, token, scan_tokens):
    return search(model, sample, sae_ref, token, scan_tokens)


# ---- training the embedded SAE -------------------------------------------------------------------

def sae_train_job(minutes_hint: Any = None, *_triggers: Any) -> tuple[str, str, Any]:
    """``make sae`` as a server job: cache activations (resumable), train, evaluate, save in the cache dir."""
    runtime = get_runtime()
    options = SAETrainOptions()
    return "features-train-sae", "Training the embedded SmolLM2's SAE", lambda job: train_sae(runtime, options, job)


def describe_sae_training(meta: dict[str, Any]) -> str:
    if meta.get("status") == "stopped":
        return f"Stopped after caching {meta['chunks']} chunks of activations; start again to resume."
    held = meta["heldout"]
    return (f"Trained on {meta['tokens_trained']:,} tokens in {meta['train_seconds'] / 60:.0f} min: held-out explained "
            f"variance {held['explained_variance']:.3f}, loss recovered {held['loss_recovered']:.3f}, L0 {held['l0']:.1f}, "
            f"dead {held['dead_fraction']:.1%}. Pick 'embedded' to use it.")


register_job(P, f"{P}-train", [], sae_train_job, describe_sae_training)


@page_callback(P, Output({"type": "url-state", "page": P}, "data", allow_duplicate=True), Input(f"{P}-tab", "active_tab"),
               State({"type": "url-state", "page": P}, "data"), prevent_initial_call=True)
def on_tab(tab, state):
    """The open tab is part of the link."""
    return dict(state or {}, tab=tab)


__all__ = ["dashboard", "GlassboxError", "InputError"]
