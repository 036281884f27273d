"""Tokens page glue: ids -> analysis.tokens -> components. No tensor work here.

Four server callbacks: ``load_samples`` (model + texts -> strips; the only one that may run the
model), ``paint`` (tool/layer/head/token -> per-token values, a few KB), ``panel`` (the visible tab
only: predictions, histogram or scatter) and ``download``. Colouring, opacity, multiply, newline
visibility, token clicks and keyboard shortcuts are handled in the browser (assets/tokens.js).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, dcc, no_update

from analysis.capture import Run
from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.runtime import get_runtime
from analysis.tokens import (
    NORMALIZATIONS,
    ROPE_MODES,
    SIMILARITIES,
    SITE_KINDS,
    TOOLS,
    ViewRequest,
    compute_view,
    needed_kinds,
    next_token_stats,
    page_kinds,
    page_sites,
    predictions,
    site_kind_label,
    token_vector,
    vector_csv,
    vector_npy,
)
from analysis.tokens_attention import AttnSpec, attn_spec
from analysis.tokens_stats import density, histogram
from callbacks.common import friendly, register_picker_callbacks, resolve_text
from components.figures import empty_figure, graph
from components.pickers import USER_SAMPLE
from components.tokens_panels import (
    density_figure,
    histogram_figure,
    outlier_list,
    prediction_panel,
    shortcuts_help,
    token_header,
)
from components.tokens_strip import legend, strips

PAGE = "tokens"
MAX_OPEN_SAMPLES = 4
register_picker_callbacks(PAGE)

DEFAULT_STATE: dict[str, Any] = {
    "tool": "predictions", "kind": "hook_resid_post", "layer": 0, "head": 0, "direction": "from",
    "rope": "full", "multiply": 1, "sim": "tokens", "dim": 0, "norm": "none", "opacity": 0.8,
    "newlines": True, "s": 0, "t": 0, "tab": "token", "highlight": "",
}


def _pick(value: Any, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def initial_state(query: dict[str, str]) -> dict[str, Any]:
    """Page state from the URL query (unknown values fall back to defaults; bounds checked later)."""
    s = dict(DEFAULT_STATE)
    s["tool"] = _pick(query.get("tool"), TOOLS, s["tool"])
    s["kind"] = _pick(query.get("site"), SITE_KINDS, s["kind"])
    s["rope"] = _pick(query.get("rope"), ROPE_MODES, s["rope"])
    s["sim"] = _pick(query.get("sim"), SIMILARITIES, s["sim"])
    s["norm"] = _pick(query.get("norm"), NORMALIZATIONS, s["norm"])
    s["direction"] = _pick(query.get("dir"), ("from", "to"), s["direction"])
    s["tab"] = _pick(query.get("tab"), ("token", "hist", "scatter", "keys"), s["tab"])
    for key in ("layer", "dim", "s", "t"):
        s[key] = max(0, _int(query.get(key), s[key]) or 0)
    s["head"] = None if query.get("head") == "mean" else max(0, _int(query.get("head"), 0) or 0)
    s["multiply"] = max(1, _int(query.get("mul"), 1) or 1)
    s["newlines"] = query.get("nl", "1") != "0"
    s["highlight"] = query.get("hl", "")[:200]
    return s


def parse_dims(text: str | None, width: int) -> list[int]:
    """'12, 305 7' -> [12, 305, 7]; a bad entry or one outside 0..width-1 is a clear error."""
    dims = []
    for part in (text or "").replace(",", " ").split():
        if not part.isdigit() or int(part) >= width:
            raise InputError(f"Highlighted dimension '{part}' is not a whole number in 0..{width - 1}.")
        dims.append(int(part))
    return dims[:64]


# ---- model + texts -> runs ----------------------------------------------------------------------

def _n_tokens(model_id: str, text: str) -> int:
    return len(get_runtime().tokens(model_id, text))


_specs: dict[str, AttnSpec] = {}
_sites: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _spec(lm: LoadedModel) -> AttnSpec:
    if lm.model_id not in _specs:
        _specs[lm.model_id] = attn_spec(lm)
    return _specs[lm.model_id]


def _sample_list(samples: Any) -> list[str]:
    items = [s for s in (samples if isinstance(samples, list) else [samples]) if s]
    if not items:
        raise InputError("No sample is open: pick at least one sample (or 'Your own text').")
    if len(items) > MAX_OPEN_SAMPLES:
        raise InputError(f"{len(items)} samples are open; the limit is {MAX_OPEN_SAMPLES}. Close some.")
    return items


def open_runs(model_id: str, samples: Any, user_text: str | None,
              extra_kinds: set[str] | None = None) -> tuple[LoadedModel, list[Run], list[str], bool]:
    """The runs of the open samples (cached; the model runs only for a new model+text)."""
    runtime = get_runtime()
    lm = runtime.model(model_id)
    ids = _sample_list(samples)
    texts = [resolve_text(i, user_text) for i in ids]
    titles = ["Your text" if i == USER_SAMPLE else runtime.samples.get(i).title for i in ids]
    longest = max(_n_tokens(model_id, t) for t in texts)
    if longest > runtime.settings.max_tokens:
        raise InputError(f"A sample has {longest} tokens; the limit is {runtime.settings.max_tokens} "
                         "(max_tokens in config.py). Shorten it.")
    kinds = page_kinds(lm.info, longest, runtime.settings.run_cache_bytes // 2)
    light = kinds != SITE_KINDS
    wanted = tuple(sorted(set(kinds) | (extra_kinds or set()), key=SITE_KINDS.index))
    key = (model_id, wanted)
    if key not in _sites:
        _sites[key] = page_sites(lm, wanted)
    sites = _sites[key]
    runs = [runtime.run(model_id, t, sites) for t in texts]
    return lm, runs, titles, light


def view_request(sel: dict | None, tool: str, kind: str, layer: Any, head: Any, mean: bool, direction: str,
                 rope: str, sim: str, dim: Any, norm: str, meta: dict) -> ViewRequest:
    """Controls -> a ViewRequest, with bounds named in the error messages."""
    n_layers, n_heads = meta["n_layers"], meta["n_heads"]
    layer_i = _int(layer, None)
    if layer_i is None or not 0 <= layer_i < n_layers:
        raise InputError(f"Layer must be a whole number in 0..{n_layers - 1} (this model has {n_layers} layers).")
    head_i = _int(head, None)
    if not mean and (head_i is None or not 0 <= head_i < n_heads):
        raise InputError(f"Head must be a whole number in 0..{n_heads - 1} (this model has {n_heads} heads).")
    dim_i = _int(dim, None)
    if dim_i is None or dim_i < 0:
        raise InputError("Dimension must be a whole number ≥ 0.")
    sel = sel or {}
    lengths = meta["lengths"]
    s = min(max(0, _int(sel.get("s"), 0) or 0), len(lengths) - 1)
    t = min(max(0, _int(sel.get("i"), 0) or 0), lengths[s] - 1)
    return ViewRequest(tool=tool, layer=layer_i, head=None if mean else head_i, kind=kind, rope=rope,
                       direction=direction, similarity=sim, dim=dim_i, norm=norm, sample=s, pos=t)


def _err(exc: BaseException) -> tuple[str, bool]:
    return friendly(exc), True


# ---- callbacks -----------------------------------------------------------------------------------

@callback(
    Output("tokens-strips", "children"),
    Output("tokens-meta", "data"),
    Output("tokens-layer", "max"),
    Output("tokens-head", "max"),
    Output("tokens-error", "children"),
    Output("tokens-error", "is_open"),
    Input("tokens-model", "value"),
    Input("tokens-sample", "value"),
    Input("tokens-text", "value"),
)
def load_samples(model_id: str, samples: Any, user_text: str | None) -> tuple:
    """Run (or fetch from cache) every open sample and render the strips."""
    try:
        lm, runs, titles, light = open_runs(model_id, samples, user_text)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message; the page stays usable
        return [], None, no_update, no_update, *_err(exc)
    info = lm.info
    if info.is_causal:
        for run in runs:
            next_token_stats(run)  # once per run, so the first token/tool change is fast
    meta = {
        "model": model_id, "lengths": [r.n_tokens for r in runs], "titles": titles,
        "n_layers": info.n_layers, "n_heads": info.n_heads, "d_model": info.d_model, "d_mlp": info.d_mlp,
        "causal": info.is_causal, "light": light,
    }
    body = strips([{"title": t, "tokens": r.tokens} for t, r in zip(titles, runs, strict=True)])
    return body, meta, info.n_layers - 1, info.n_heads - 1, "", False


VIEW_INPUTS = [
    Input("tokens-selected", "data"), Input("tokens-tool", "value"), Input("tokens-site", "value"),
    Input("tokens-layer", "value"), Input("tokens-head", "value"), Input("tokens-mean", "value"),
    Input("tokens-direction", "value"), Input("tokens-rope", "value"), Input("tokens-sim", "value"),
    Input("tokens-dim", "value"), Input("tokens-norm", "value"),
]
TEXT_STATES = [State("tokens-model", "value"), State("tokens-sample", "value"), State("tokens-text", "value")]


def compute_paint(meta: dict, sel: dict | None, tool: str, kind: str, layer: Any, head: Any, mean: bool,
                  direction: str, rope: str, sim: str, dim: Any, norm: str, model_id: str, samples: Any,
                  user_text: str | None) -> dict[str, Any]:
    """The paint payload: per-sample values, the colour scale and the selection (plain JSON)."""
    req = view_request(sel, tool, kind, layer, head, mean, direction, rope, sim, dim, norm, meta)
    lm, runs, _titles, _light = open_runs(model_id, samples, user_text, needed_kinds(tool, kind, sim))
    col = compute_view(runs, lm, req, _spec(lm))
    return {"values": col.values, "lo": col.lo, "mid": col.mid, "hi": col.hi, "diverging": col.diverging,
            "label": col.label, "notes": col.notes, "sel": [req.sample, req.pos],
            "multiply": tool == "attention" and rope == "full", "tool": tool, "rope": rope, "dir": direction}


@callback(
    Output("tokens-paint", "data"),
    Output("tokens-legend", "children"),
    Output("tokens-notes", "children"),
    Output("tokens-view-error", "children"),
    Output("tokens-view-error", "is_open"),
    Input("tokens-meta", "data"),
    *VIEW_INPUTS,
    *TEXT_STATES,
)
def paint(meta: dict | None, sel: dict | None, *args: Any) -> tuple:
    """Tool/layer/head/token change -> the per-token values (no model run: cached runs)."""
    if not meta:
        return None, None, None, no_update, no_update
    try:
        data = compute_paint(meta, sel, *args)
    except Exception as exc:  # noqa: BLE001
        return no_update, no_update, no_update, *_err(exc)
    notes = list(data["notes"])
    if meta.get("light"):
        notes.append("Long text on a big model: MLP/attention-output sites are captured on first use.")
    leg = legend(data["lo"], data["mid"], data["hi"], data["label"], data["diverging"])
    return data, leg, " ".join(notes), "", False


def compute_panel(meta: dict, sel: dict | None, tab: str, kind: str, layer: Any, norm: str, dim: Any,
                  highlight: str | None, model_id: str, samples: Any, user_text: str | None) -> list:
    """Children of the visible tab only (the hidden tabs send nothing)."""
    if tab == "keys":
        return [shortcuts_help()]
    req = view_request(sel, "sum", kind, layer, 0, True, "from", "full", "tokens", dim, norm, meta)
    lm, runs, titles, _light = open_runs(model_id, samples, user_text, {kind})
    run = runs[req.sample]
    header = token_header(titles[req.sample], req.pos, run.tokens[req.pos], run.n_tokens)
    where = f"L{req.layer} {site_kind_label(kind)}"
    if tab == "token":
        if not lm.info.is_causal:
            return [header, prediction_panel(None, "This model is an encoder: no next-token predictions.")]
        panel = dataclasses.asdict(predictions(run, lm.tokenizer, req.pos))
        return [header, prediction_panel(panel)]
    from analysis.tokens import site_matrix

    x = site_matrix(run, kind, req.layer, norm)
    dim_i = req.dim if req.dim < x.shape[1] else None
    if tab == "hist":
        hist = dict(vars(histogram(x, req.pos, dim_i)))  # shallow: asdict deep-copies every list
        fig = histogram_figure(hist, f"Histogram · {where} · token #{req.pos} vs median token")
        return [header, graph(fig, "tokens-hist", "tokens-histogram", 300),
                outlier_list(hist["outlier_dims"], hist["outlier_values"])]
    dens = density(x, req.pos)
    chosen = parse_dims(highlight, x.shape[1])
    fig = density_figure({"value_edges": dens.value_edges, "counts": dens.counts,
                          "selected_values": dens.selected_values, "median_values": dens.median_values,
                          "highlighted": dens.highlighted, "chosen": chosen}, dim_i,
                         f"Scatter · {where} · all {run.n_tokens} tokens (density; y shows the 0.1–99.9% range, "
                         "double-click for all)")
    return [header, graph(fig, "tokens-scatter", "tokens-scatter", 340)]


@callback(
    Output("tokens-panel", "children"),
    Input("tokens-meta", "data"),
    Input("tokens-selected", "data"),
    Input("tokens-tabs", "active_tab"),
    Input("tokens-site", "value"),
    Input("tokens-layer", "value"),
    Input("tokens-norm", "value"),
    Input("tokens-dim", "value"),
    Input("tokens-highlight", "value"),
    *TEXT_STATES,
)
def panel(meta: dict | None, sel: dict | None, tab: str, *args: Any) -> list:
    if not meta:
        return [graph(empty_figure("Pick a model and a sample."), "tokens-empty", "tokens", 120)]
    try:
        return compute_panel(meta, sel, tab, *args)
    except Exception as exc:  # noqa: BLE001
        from components.feedback import info_note

        return [info_note(friendly(exc))]


def vector_file(meta: dict, sel: dict | None, fmt: str, kind: str, layer: Any, norm: str, model_id: str,
                samples: Any, user_text: str | None) -> dict[str, Any]:
    """The selected token's activation vector as a dcc.Download payload (.npy or .csv)."""
    req = view_request(sel, "sum", kind, layer, 0, True, "from", "full", "tokens", 0, norm, meta)
    _lm, runs, _t, _l = open_runs(model_id, samples, user_text, {kind})
    vec = token_vector(runs[req.sample], kind, req.layer, req.pos, norm)
    name = f"{kind.replace('.', '_')}_L{req.layer}_s{req.sample}_t{req.pos}" + ("" if norm == "none" else f"_{norm}")
    if fmt == "npy":
        return dcc.send_bytes(vector_npy(vec), f"{name}.npy")
    return dcc.send_string(vector_csv(vec), f"{name}.csv")


@callback(
    Output("tokens-download", "data"),
    Output("tokens-view-error", "children", allow_duplicate=True),
    Output("tokens-view-error", "is_open", allow_duplicate=True),
    Input("tokens-dl-npy", "n_clicks"),
    Input("tokens-dl-csv", "n_clicks"),
    State("tokens-meta", "data"),
    State("tokens-selected", "data"),
    State("tokens-site", "value"),
    State("tokens-layer", "value"),
    State("tokens-norm", "value"),
    *TEXT_STATES,
    prevent_initial_call=True,
)
def download(_npy: int, _csv: int, meta: dict | None, sel: dict | None, *args: Any) -> tuple:
    if not meta:
        return no_update, "Nothing to download yet: pick a model and a sample.", True
    fmt = "npy" if ctx.triggered_id == "tokens-dl-npy" else "csv"
    try:
        return vector_file(meta, sel, fmt, *args), no_update, no_update
    except Exception as exc:  # noqa: BLE001
        return no_update, *_err(exc)


@callback(
    Output("tokens-copy", "content"),
    Input("tokens-copy", "n_clicks"),
    State("tokens-sample", "value"),
    State("tokens-text", "value"),
    prevent_initial_call=True,
)
def copy_sample(_n: int, samples: Any, user_text: str | None) -> str:
    """The open samples' texts for the clipboard (separated by blank lines)."""
    try:
        return "\n\n".join(resolve_text(i, user_text) for i in _sample_list(samples))
    except Exception as exc:  # noqa: BLE001
        return friendly(exc)


@callback(
    Output({"type": "url-state", "page": PAGE}, "data"),
    Input("tokens-model", "value"), Input("tokens-sample", "value"), *VIEW_INPUTS,
    Input("tokens-multiply", "value"), Input("tokens-newlines", "value"), Input("tokens-tabs", "active_tab"),
    Input("tokens-highlight", "value"),
)
def url_state(model_id: str, samples: Any, sel: dict | None, tool: str, kind: str, layer: Any, head: Any,
              mean: bool, direction: str, rope: str, sim: str, dim: Any, norm: str, multiply: Any,
              newlines: bool, tab: str, highlight: str | None) -> dict[str, Any]:
    sel = sel or {}
    items = samples if isinstance(samples, list) else [samples]
    return {"model": model_id, "sample": ",".join(i for i in items if i), "tool": tool, "site": kind,
            "layer": layer, "head": "mean" if mean else head, "dir": direction, "rope": rope, "sim": sim,
            "dim": dim, "norm": norm, "mul": multiply, "nl": "1" if newlines else "0", "tab": tab, "hl": highlight,
            "s": sel.get("s", 0), "t": sel.get("i", 0)}


clientside_callback(
    ClientsideFunction(namespace="tokens", function_name="paint"),
    Output("tokens-paint-sink", "children"),
    Input("tokens-paint", "data"),
    Input("tokens-opacity", "value"),
    Input("tokens-multiply", "value"),
    Input("tokens-strips", "children"),
)
clientside_callback(
    "function(show) { return show ? 'gb-strips' : 'gb-strips gb-hide-nl'; }",
    Output("tokens-strips", "className"),
    Input("tokens-newlines", "value"),
)
