"""Features glue: SAE + feature -> dashboard; token lists; definition tree (background job); steering; search.

Each callback calls a plain function below (tested directly), which calls ``analysis.features*`` and
renders with ``components.features_*``. Errors become the page's alert; the server keeps serving.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

import numpy as np
from dash import ALL, Input, Output, State, callback, ctx, dcc, no_update

from analysis.errors import InputError
from analysis.features import (
    density_from_training,
    feature_record,
    no_sae_message,
    resolve,
    search_features,
    text_activations,
)
from analysis.features_sae import EMBEDDED_SAE, SAEError, embedded_sae_exists
from analysis.features_scan import DEFAULT_TOKENS, MAX_TOKENS, cached_scan, feature_stats, get_scan
from analysis.features_steer import generate_steered
from analysis.features_tree import TreeOptions, build_tree, definitions, tree_layout
from analysis.features_vectors import VectorOptions, logit_effects, token_list
from analysis.runtime import get_runtime
from callbacks.common import friendly, register_picker_callbacks, resolve_text
from components import features_figures as ff
from components import features_view as fv
from components.figures import empty_figure

P = "features"
register_picker_callbacks(P)


def as_int(value: Any, name: str, low: int, high: int) -> int:
    """An integer in [low, high] from an input box, or a clear InputError naming the bound."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number in [{low}, {high}].") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise InputError(f"{name} must be a whole number in [{low}, {high}], got {value}.")
    return int(number)


def as_float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number.") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number.")
    return number


def vector_options(kind: Any, exponent: Any, offset: Any, scale: Any, pca: Any) -> VectorOptions:
    return VectorOptions(kind=str(kind or "decoder"), exponent=as_float(exponent, "Exponent m"),
                         centroid_offset=as_float(offset, "Centroid offset"), scale=as_float(scale, "Scaling"),
                         pca_weight=as_float(pca, "PCA weight")).check()


# ---- dashboard ---------------------------------------------------------------------------------

def dashboard(model: str, sample: str | None, user_text: str | None, sae_ref: str | None, feature: Any,
              scan_tokens: Any) -> dict[str, Any]:
    """Everything the dashboard tab shows for one (model, text, SAE, feature)."""
    runtime = get_runtime()
    sae_ref = (sae_ref or EMBEDDED_SAE).strip()
    if sae_ref == EMBEDDED_SAE and not embedded_sae_exists(runtime.settings.cache_dir):
        return {"no_sae": fv.no_sae_panel(no_sae_message(runtime))}
    lm, sae = resolve(runtime, model, sae_ref)
    f = as_int(feature if feature not in (None, "") else 0, "Feature", 0, sae.d_sae - 1)
    n_scan = as_int(scan_tokens or DEFAULT_TOKENS, "Scan tokens", 1000, MAX_TOKENS)
    text = resolve_text(sample, user_text, runtime)
    acts = text_activations(runtime, model, sae, text)
    effects = logit_effects(lm, sae, f)
    train_density = density_from_training(sae)
    scan = cached_scan(runtime, model, sae, n_scan)
    out: dict[str, Any] = {
        "info": fv.sae_info({"ref": sae.ref, "d_sae": sae.d_sae, "d_in": sae.d_in, "site": sae.site,
                             "hook_name": sae.hook_name, "metrics": sae.meta}),
        "strip": fv.token_strip(acts.tokens, acts.feature(f), f),
        "badges": fv.top_feature_badges(acts.top_features(16), f),
        "logits": ff.logit_figure(effects.positive, effects.negative, f),
        "feature": f,
        "max_feature": sae.d_sae - 1,
    }
    if scan is None:
        out["examples"] = fv.html.Div(
            f"Top activations need a corpus scan ({n_scan:,} tokens, run once and cached on disk): press "
            "'Scan corpus'.", className="text-muted small", id="features-scan-needed")
        out["hist"] = empty_figure("Scan the corpus for the activation histogram")
        out["density_fig"] = (ff.density_figure(np.log10(np.where(train_density > 0, train_density, np.nan)).tolist(),
                                                float(np.log10(train_density[f])) if train_density[f] > 0 else None, f)
                              if train_density is not None else empty_figure("Scan the corpus for feature densities"))
        out["density"] = fv.density_line(None, float(train_density[f]) if train_density is not None else None, None)
    else:
        stats = feature_stats(lm, scan, f)
        dens = scan.density()
        with np.errstate(divide="ignore"):
            logd = np.where(dens > 0, np.log10(dens), -np.inf)
        out["examples"] = fv.examples_section(asdict(stats))
        out["hist"] = ff.histogram_figure(stats.hist_counts, stats.hist_edges, f, scan.n_tokens)
        out["density_fig"] = ff.density_figure(logd.tolist(), float(logd[f]), f)
        out["density"] = fv.density_line(stats.density, float(train_density[f]) if train_density is not None else None,
                                         scan.n_tokens)
    return out


@callback(
    Output(f"{P}-main", "style"), Output(f"{P}-info", "children"), Output(f"{P}-strip-box", "children"),
    Output(f"{P}-badges", "children"), Output(f"{P}-logits", "figure"), Output(f"{P}-hist", "figure"),
    Output(f"{P}-density-fig", "figure"), Output(f"{P}-density-box", "children"), Output(f"{P}-examples", "children"),
    Output(f"{P}-feature", "max"), Output({"type": "url-state", "page": P}, "data"),
    Output(f"{P}-alert", "children"), Output(f"{P}-alert", "is_open"), Output(f"{P}-no-sae", "children"),
    Input(f"{P}-model", "value"), Input(f"{P}-sample", "value"), Input(f"{P}-text", "value"),
    Input(f"{P}-sae", "value"), Input(f"{P}-feature", "value"), Input(f"{P}-scan-done", "data"),
    State(f"{P}-scan-tokens", "value"), State(f"{P}-tab", "active_tab"),
)
def on_dashboard(model, sample, text, sae_ref, feature, _done, scan_tokens, tab):
    state = {"model": model, "sample": sample, "sae": sae_ref, "feature": feature, "tab": tab}
    keep = (no_update,) * 10
    try:
        out = dashboard(model, sample, text, sae_ref, feature, scan_tokens)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the alert
        return (*keep, state, friendly(exc), True, None)
    if "no_sae" in out:
        return ({"display": "none"}, *keep[1:], state, None, False, out["no_sae"])
    return ({}, out["info"], out["strip"], out["badges"], out["logits"], out["hist"], out["density_fig"],
            out["density"], out["examples"], out["max_feature"], state, None, False, None)


@callback(Output(f"{P}-feature", "value"), Input({"type": "features-pick", "index": ALL}, "n_clicks"),
          prevent_initial_call=True)
def on_pick(clicks):
    if not ctx.triggered_id or not any(clicks or []):
        return no_update
    return ctx.triggered_id["index"]


def scan_job(set_progress: Any, model: str, sae_ref: str | None, scan_tokens: Any) -> int:
    """Corpus scan (same function as ``python -m analysis.features_scan``); returns the budget."""
    runtime = get_runtime()
    _lm, sae = resolve(runtime, model, (sae_ref or EMBEDDED_SAE).strip())
    n = as_int(scan_tokens or DEFAULT_TOKENS, "Scan tokens", 1000, MAX_TOKENS)
    get_scan(runtime, model, sae, n, progress=lambda d, t: set_progress((100 * d / t, f"{d}/{t} batches")))
    return n


@callback(
    Output(f"{P}-scan-done", "data"), Output(f"{P}-scan-msg", "children"),
    Input(f"{P}-scan", "n_clicks"),
    State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-scan-tokens", "value"),
    background=True,
    progress=[Output(f"{P}-scan-progress", "value"), Output(f"{P}-scan-progress", "label")],
    cancel=[Input(f"{P}-scan-cancel", "n_clicks")],
    running=[(Output(f"{P}-scan", "disabled"), True, False), (Output(f"{P}-scan-cancel", "disabled"), False, True)],
    prevent_initial_call=True,
)
def on_scan(set_progress, _clicks, model, sae_ref, scan_tokens):
    try:
        n = scan_job(set_progress, model, sae_ref, scan_tokens)
    except Exception as exc:  # noqa: BLE001
        return no_update, friendly(exc)
    return n, f"Scanned {n:,} tokens (cached on disk)."


# ---- token lists -------------------------------------------------------------------------------

def token_rows(model: str, sae_ref: str | None, feature: Any, options: VectorOptions) -> list[dict[str, Any]]:
    lm, sae = resolve(get_runtime(), model, (sae_ref or EMBEDDED_SAE).strip())
    f = as_int(feature if feature not in (None, "") else 0, "Feature", 0, sae.d_sae - 1)
    result = token_list(lm, sae, f, options, top=100)
    return [{"token": t, "token_id": i, "ratio": r, "cos_v": cv, "cos_c": cc}
            for t, i, r, cv, cc in zip(result.tokens, result.token_ids, result.ratio, result.cos_v, result.cos_c,
                                       strict=True)]


VECTOR_STATES = [State(f"{P}-{name}", "value") for name in ("kind", "exponent", "offset", "scale", "pca")]


@callback(
    Output(f"{P}-tokens-box", "children"), Output(f"{P}-tokens-store", "data"),
    Output(f"{P}-alert", "children", allow_duplicate=True), Output(f"{P}-alert", "is_open", allow_duplicate=True),
    Input(f"{P}-tokens-run", "n_clicks"),
    State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-feature", "value"), *VECTOR_STATES,
    prevent_initial_call=True,
)
def on_tokens(_clicks, model, sae_ref, feature, kind, exponent, offset, scale, pca):
    try:
        rows = token_rows(model, sae_ref, feature, vector_options(kind, exponent, offset, scale, pca))
    except Exception as exc:  # noqa: BLE001
        return no_update, no_update, friendly(exc), True
    return [fv.token_cloud(rows), fv.token_table(rows)], {"rows": rows, "feature": feature}, None, False


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

def tree_job(set_progress: Any, model: str, sae_ref: str | None, feature: Any, options: VectorOptions,
             prompt: str, top_k: Any, cutoff: Any, depth: Any) -> dict[str, Any]:
    """Build the tree (background process); returns plain data for the store."""
    lm, sae = resolve(get_runtime(), model, (sae_ref or EMBEDDED_SAE).strip())
    f = as_int(feature if feature not in (None, "") else 0, "Feature", 0, sae.d_sae - 1)
    tree_options = TreeOptions(prompt=prompt or "", top_k=as_int(top_k, "Top-k", 1, 10),
                               cutoff=as_float(cutoff, "Cut-off"), max_depth=as_int(depth, "Max depth", 1, 40))
    tree = build_tree(lm, sae, f, options, tree_options,
                      progress=lambda d, t: set_progress((100 * d / t, f"depth {d}/{t}")))
    return {"tree": tree.as_dict(), "layout": tree_layout(tree), "definitions": definitions(tree)}


@callback(
    Output(f"{P}-tree-store", "data"), Output(f"{P}-tree-msg", "children"),
    Input(f"{P}-tree-run", "n_clicks"),
    State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-feature", "value"), *VECTOR_STATES,
    State(f"{P}-prompt", "value"), State(f"{P}-topk", "value"), State(f"{P}-cutoff", "value"),
    State(f"{P}-depth", "value"),
    background=True,
    progress=[Output(f"{P}-tree-progress", "value"), Output(f"{P}-tree-progress", "label")],
    cancel=[Input(f"{P}-tree-cancel", "n_clicks")],
    running=[(Output(f"{P}-tree-run", "disabled"), True, False), (Output(f"{P}-tree-cancel", "disabled"), False, True)],
    prevent_initial_call=True,
)
def on_tree(set_progress, _clicks, model, sae_ref, feature, kind, exponent, offset, scale, pca, prompt, top_k, cutoff,
            depth):
    try:
        data = tree_job(set_progress, model, sae_ref, feature, vector_options(kind, exponent, offset, scale, pca),
                        prompt, top_k, cutoff, depth)
    except Exception as exc:  # noqa: BLE001
        return no_update, fv.html.Span(friendly(exc), className="text-danger")
    tree = data["tree"]
    msg = (f"{len(tree['nodes']) - 1} nodes in {tree['seconds']:.1f} s ({tree['forwards']} batched forwards)"
           + (" — node limit reached" if tree["truncated"] else ""))
    return data, msg


def trimmed(store: dict[str, Any], trim: float) -> dict[str, Any]:
    """Re-layout the stored tree keeping paths with cumulative probability >= 10**trim (no model call)."""
    from analysis.features_tree import DefinitionTree, TreeNode

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
    return ff.tree_figure(layout), fv.definitions_list([tuple(d) for d in store["definitions"]])


@callback(Output(f"{P}-tree-download", "data"), Input(f"{P}-tree-json", "n_clicks"), State(f"{P}-tree-store", "data"),
          prevent_initial_call=True)
def on_tree_json(_clicks, store):
    if not store:
        return no_update
    return dcc.send_string(json.dumps(store["tree"], indent=1), f"feature-{store['tree']['feature']}-tree.json")


# ---- steering and search -----------------------------------------------------------------------

def steer(model: str, sae_ref: str | None, feature: Any, prompt: str, mode: str, strength: Any, n_new: Any) -> dict:
    lm, sae = resolve(get_runtime(), model, (sae_ref or EMBEDDED_SAE).strip())
    f = as_int(feature if feature not in (None, "") else 0, "Feature", 0, sae.d_sae - 1)
    result = generate_steered(lm, sae, f, prompt or "", mode=mode or "add", strength=as_float(strength, "Strength"),
                              max_new_tokens=as_int(n_new, "New tokens", 1, 80))
    return asdict(result)


@callback(
    Output(f"{P}-steer-box", "children"),
    Input(f"{P}-steer-run", "n_clicks"),
    State(f"{P}-model", "value"), State(f"{P}-sae", "value"), State(f"{P}-feature", "value"),
    State(f"{P}-steer-prompt", "value"), State(f"{P}-steer-mode", "value"), State(f"{P}-steer-strength", "value"),
    State(f"{P}-steer-n", "value"),
    prevent_initial_call=True,
)
def on_steer(_clicks, model, sae_ref, feature, prompt, mode, strength, n_new):
    try:
        return fv.steering_output(steer(model, sae_ref, feature, prompt, mode, strength, n_new))
    except Exception as exc:  # noqa: BLE001
        return fv.html.Div(friendly(exc), className="text-danger", id="features-steer-error")


def search(model: str, sample: str | None, sae_ref: str | None, token: str, scan_tokens: Any) -> Any:
    n_scan = as_int(scan_tokens or DEFAULT_TOKENS, "Scan tokens", 1000, MAX_TOKENS)
    shown, hits = search_features(get_runtime(), model, (sae_ref or EMBEDDED_SAE).strip(), token or "", n_scan)
    rows = [asdict(h) for h in hits]
    hrefs = ["/features?" + urlencode({"model": model, "sample": sample or "", "sae": sae_ref or EMBEDDED_SAE,
                                       "feature": h.feature}) for h in hits]
    return fv.search_table(shown, rows, hrefs)


@callback(Output(f"{P}-search-box", "children"), Input(f"{P}-search-run", "n_clicks"),
          Input(f"{P}-search-token", "n_submit"),
          State(f"{P}-model", "value"), State(f"{P}-sample", "value"), State(f"{P}-sae", "value"),
          State(f"{P}-search-token", "value"), State(f"{P}-scan-tokens", "value"), prevent_initial_call=True)
def on_search(_clicks, _submit, model, sample, sae_ref, token, scan_tokens):
    try:
        return search(model, sample, sae_ref, token, scan_tokens)
    except Exception as exc:  # noqa: BLE001
        return fv.html.Div(friendly(exc), className="text-danger")


__all__ = ["dashboard", "feature_record", "SAEError"]


@callback(Output({"type": "url-state", "page": P}, "data", allow_duplicate=True), Input(f"{P}-tab", "active_tab"),
          State({"type": "url-state", "page": P}, "data"), prevent_initial_call=True)
def on_tab(tab, state):
    """The open tab is part of the link."""
    return dict(state or {}, tab=tab)
