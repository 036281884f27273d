"""Tokens page glue: controls -> analysis.tokens -> components. No tensor work here.

Server callbacks: ``load_samples`` (model + texts -> strips; the only one that may run the model),
``paint`` (tool/layer/head/token -> per-token values, a few KB), ``panel`` (the selected token's panel
and the visible tab) and ``download``. Colouring, opacity, multiply, newline visibility, token clicks,
keyboard shortcuts and which controls a tool shows are handled in the browser (assets/tokens.js).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dash import ClientsideFunction, Input, Output, State, clientside_callback, ctx, dcc, html, no_update

from analysis.params import parse_choice, parse_int, parse_int_list, url_int
from analysis.runtime import get_runtime
from analysis.tokens import (
    MAX_OPEN_SAMPLES,
    NORMALIZATIONS,
    ROPE_MODES,
    SIMILARITIES,
    SITE_KINDS,
    TOOLS,
    ViewRequest,
    attention_matrix,
    compute_view,
    density,
    edit_shift,
    edited_runs,
    features_here,
    histogram,
    needed_kinds,
    neurons_here,
    next_token_stats,
    open_samples,
    predictions,
    site_kind_label,
    site_matrix,
    token_vector,
    vector_csv,
    vector_npy,
)
from callbacks.common import page_callback, register_picker_callbacks
from callbacks.edits import edits_input, page_edits
from callbacks.shell import register_model_loading
from components.feedback import RUNNING_HIDDEN, RUNNING_SHOWN
from components.figures import empty_figure, graph
from components.tokens_panels import (
    attention_heatmap,
    density_figure,
    description_view,
    edited_predictions,
    focus_links,
    generation_view,
    histogram_figure,
    outlier_list,
    prediction_panel,
    shortcuts_help,
    token_header,
)
from components.tokens_strip import legend, strips

PAGE = "tokens"
register_picker_callbacks(PAGE)
register_model_loading(PAGE)
TABS = ("token", "attention", "hist", "scatter", "generate", "keys")

DEFAULT_STATE: dict[str, Any] = {
    "tool": "predictions", "kind": "hook_resid_post", "layer": 0, "head": 0, "direction": "from",
    "rope": "full", "multiply": 1, "sim": "tokens", "dim": 0, "norm": "none", "opacity": 0.8,
    "newlines": True, "s": 0, "t": 0, "tab": "token", "highlight": "",
}


def initial_state(query: dict[str, str]) -> dict[str, Any]:
    """Page state from the URL query (unknown values fall back to defaults; bounds checked on use)."""
    s = dict(DEFAULT_STATE)
    pick = {"tool": ("tool", TOOLS), "kind": ("site", SITE_KINDS), "rope": ("rope", ROPE_MODES),
            "sim": ("sim", SIMILARITIES), "norm": ("norm", NORMALIZATIONS), "direction": ("dir", ("from", "to")),
            "tab": ("tab", TABS)}
    for key, (name, allowed) in pick.items():
        if query.get(name) in allowed:
            s[key] = query[name]
    for key in ("layer", "dim", "s", "t"):
        s[key] = url_int(query.get(key), s[key], 0)
    s["head"] = None if query.get("head") == "mean" else url_int(query.get("head"), 0, 0)
    s["multiply"] = url_int(query.get("mul"), 1, 1)
    s["newlines"] = query.get("nl", "1") != "0"
    s["highlight"] = query.get("hl", "")[:200]
    return s


def default_tool(is_causal: bool, tool: str) -> str:
    """Encoders have no next-token predictions: they open on attention."""
    return tool if is_causal or tool not in ("predictions", "loss") else "attention"


# ---- parse ----------------------------------------------------------------------------------------

def view_request(meta: dict, sel: dict | None, tool: str, kind: str, layer: Any, head: Any, mean: bool,
                 direction: str, rope: str, sim: str, dim: Any, norm: str) -> ViewRequest:
    """Controls -> a ViewRequest; every bad value names its bound beside its field."""
    n_layers, n_heads = meta["n_layers"], meta["n_heads"]
    width = meta["d_mlp"] if kind == "mlp.hook_post" else meta["d_model"]
    sel = sel or {}
    lengths = meta["lengths"]
    sample = min(max(0, url_int(sel.get("s"), 0)), len(lengths) - 1)
    return ViewRequest(
        tool=parse_choice(tool, "Tool", TOOLS), kind=parse_choice(kind, "Site", SITE_KINDS),
        layer=parse_int(layer, "Layer", 0, n_layers - 1, field="tokens-layer"),
        head=None if mean else parse_int(head, "Head", 0, n_heads - 1, field="tokens-head"),
        direction=parse_choice(direction, "Attention direction", ("from", "to")),
        rope=parse_choice(rope, "RoPE mode", ROPE_MODES), similarity=parse_choice(sim, "Similarity", SIMILARITIES),
        dim=parse_int(dim, "Dimension", 0, width - 1, field="tokens-dim") if tool == "dimension" else 0,
        norm=parse_choice(norm, "Normalization", NORMALIZATIONS),
        sample=sample, pos=min(max(0, url_int(sel.get("i"), 0)), lengths[sample] - 1),
    )


# ---- load -----------------------------------------------------------------------------------------

def load_view(model_id: str, samples: Any, user_text: str | None) -> tuple[list, dict[str, Any]]:
    """(strips, meta) of the open samples: runs them once (cached), then never again for this text."""
    runtime = get_runtime()
    opened = open_samples(runtime, model_id, samples, user_text)
    info = opened.lm.info
    if info.is_causal:
        for run in opened.runs:
            next_token_stats(runtime, run)  # once per run, so the first token/tool change is fast
    meta = {
        "model": model_id, "lengths": opened.lengths, "titles": opened.titles, "n_layers": info.n_layers,
        "n_heads": info.n_heads, "d_model": info.d_model, "d_mlp": info.d_mlp, "causal": info.is_causal,
        "light": opened.light, "encoder": not info.is_causal,
    }
    body = strips([{"title": t, "tokens": r.tokens} for t, r in zip(opened.titles, opened.runs, strict=True)],
                  word_pieces=meta["encoder"])
    return body, meta


def loading_message(model_id: str, samples: Any, user_text: str | None) -> str:
    """What the strips' spinner says while ``load_samples`` runs (fast: no model run here)."""
    runtime = get_runtime()
    name = model_id.split(":")[-1].split("/")[-1]
    if not runtime.registry.is_loaded(model_id):
        return f"Loading {name} (its progress is shown above)…"
    try:
        ids = [s for s in ([samples] if isinstance(samples, str) else samples or []) if s][:MAX_OPEN_SAMPLES]
        n = sum(len(runtime.tokens(model_id, runtime.text(i, user_text))) for i in ids)
    except Exception:  # noqa: BLE001 - the load callback reports the problem
        return "Opening the samples…"
    return f"Running {name} on {n:,} tokens (once per text; every view after this reuses the run)…"


@page_callback(PAGE, Output("tokens-strips", "children"), Output("tokens-meta", "data"),
               Output("tokens-tool", "value"),
               Input("tokens-model", "value"), Input("tokens-sample", "value"), Input("tokens-text", "value"),
               State("tokens-tool", "value"),
               running=[(Output("tokens-loading-box", "style"), RUNNING_SHOWN, RUNNING_HIDDEN)])
def load_samples(model_id: str, samples: Any, user_text: str | None, tool: str) -> tuple:
    """Run (or fetch from cache) every open sample and render the strips."""
    body, meta = load_view(model_id, samples, user_text)
    chosen = default_tool(meta["causal"], tool)
    return body, meta, chosen if chosen != tool else no_update


@page_callback(PAGE, Output("tokens-loading-msg", "children"),
               Input("tokens-model", "value"), Input("tokens-sample", "value"), Input("tokens-text", "value"))
def on_loading_message(model_id: str, samples: Any, user_text: str | None) -> str:
    return loading_message(model_id, samples, user_text)


# ---- paint ----------------------------------------------------------------------------------------

VIEW_INPUTS = [
    Input("tokens-selected", "data"), Input("tokens-tool", "value"), Input("tokens-site", "value"),
    Input("tokens-layer", "value"), Input("tokens-head", "value"), Input("tokens-mean", "value"),
    Input("tokens-direction", "value"), Input("tokens-rope", "value"), Input("tokens-sim", "value"),
    Input("tokens-dim", "value"), Input("tokens-norm", "value"),
]
TEXT_STATES = [State("tokens-model", "value"), State("tokens-sample", "value"), State("tokens-text", "value")]


def compute_paint(meta: dict, sel: dict | None, tool: str, kind: str, layer: Any, head: Any, mean: bool,
                  direction: str, rope: str, sim: str, dim: Any, norm: str, model_id: str, samples: Any,
                  user_text: str | None, edits_store: dict | None = None) -> dict[str, Any]:
    """The paint payload: per-sample values, the colour scale and the selection (plain JSON)."""
    runtime = get_runtime()
    req = view_request(meta, sel, tool, kind, layer, head, mean, direction, rope, sim, dim, norm)
    opened = open_samples(runtime, model_id, samples, user_text, needed_kinds(req.tool, req.kind, req.similarity))
    edits = page_edits(runtime, model_id, edits_store) if req.tool == "edit" else []
    col = compute_view(runtime, opened.runs, opened.lm, req, edited_runs(runtime, opened.runs, edits))
    notes = list(col.notes)
    if opened.light:
        notes.append("Long text on a big model: MLP/attention-output sites are captured on first use.")
    return {"values": col.values, "lo": col.lo, "mid": col.mid, "hi": col.hi, "diverging": col.diverging,
            "label": col.label, "notes": notes, "sel": [req.sample, req.pos],
            "multiply": req.tool == "attention" and req.rope == "full", "tool": req.tool, "rope": req.rope,
            "dir": req.direction, "n_layers": meta["n_layers"], "n_heads": meta["n_heads"]}


@page_callback(PAGE, Output("tokens-paint", "data"), Output("tokens-legend", "children"),
               Output("tokens-notes", "children"), Input("tokens-meta", "data"), *VIEW_INPUTS, *TEXT_STATES,
               edits_input())
def paint(meta: dict | None, sel: dict | None, *args: Any) -> tuple:
    """Tool/layer/head/token change -> the per-token values (no model run: cached runs)."""
    if not meta:
        return None, None, None
    data = compute_paint(meta, sel, *args)
    leg = legend(data["lo"], data["mid"], data["hi"], data["label"], data["diverging"])
    return data, leg, " ".join(data["notes"])


# ---- panel ----------------------------------------------------------------------------------------

def compute_panel(meta: dict, sel: dict | None, tab: str, kind: str, layer: Any, norm: str, dim: Any,
                  highlight: str | None, model_id: str, samples: Any, user_text: str | None,
                  head: Any = 0, mean: bool = False, rope: str = "full", edits_store: dict | None = None) -> list:
    """Children of the visible tab only (the hidden tabs send nothing)."""
    runtime = get_runtime()
    tab = parse_choice(tab, "Tab", TABS)
    if tab == "keys":
        return [shortcuts_help()]
    if tab == "generate":
        req = view_request(meta, sel, "sum", kind, layer, head, mean, "from", rope, "tokens", dim, norm)
        opened = open_samples(runtime, model_id, samples, user_text)
        run = opened.runs[req.sample]
        return [token_header(opened.titles[req.sample], req.pos, run.tokens[req.pos], run.n_tokens),
                html.Div(f"Continue: the prompt is the text up to and including token #{req.pos} ({req.pos + 1} "
                         "tokens). Describe: the block output at the Layer control and this token.",
                         className="small text-muted")]
    req = view_request(meta, sel, "attention" if tab == "attention" else "sum", kind, layer, head, mean, "from",
                       rope, "tokens", dim, norm)
    opened = open_samples(runtime, model_id, samples, user_text, {req.kind} if tab in ("hist", "scatter") else ())
    run = opened.runs[req.sample]
    header = token_header(opened.titles[req.sample], req.pos, run.tokens[req.pos], run.n_tokens)
    if tab == "token":
        if not opened.lm.info.is_causal:
            return [header, prediction_panel(None, "This model is an encoder: no next-token predictions. "
                                                   "Its attention, similarities and activations are in the tools above.")]
        clean = dataclasses.asdict(predictions(runtime, opened.lm, run, req.pos))
        focus = focus_panel(model_id, samples, req.sample, run, req.pos)
        edits = page_edits(runtime, model_id, edits_store)
        if not edits:
            return [header, prediction_panel(clean), focus]
        edited = edited_runs(runtime, [run], edits)[0]
        shift = float(edit_shift(runtime, run, edited)[req.pos])
        changed = dataclasses.asdict(predictions(runtime, opened.lm, edited, req.pos))
        return [header, edited_predictions(clean, changed, shift, edited.edits.split("#")[0]), focus]
    if tab == "attention":
        grid = attention_matrix(runtime, opened.lm, run, req.layer, req.head, req.rope, req.pos)
        return [header, attention_heatmap(grid, run.tokens, req.pos)]
    x = site_matrix(runtime, run, req.kind, req.layer, req.norm)
    where = f"L{req.layer} {site_kind_label(req.kind)}"
    dim_i = parse_int(dim, "Dimension", 0, x.shape[1] - 1, default=None, field="tokens-dim")
    if tab == "hist":
        hist = dict(vars(histogram(x, req.pos, dim_i)))  # shallow: asdict deep-copies every list
        fig = histogram_figure(hist, f"Histogram · {where} · token #{req.pos} vs median token")
        return [header, graph(fig, "tokens-hist", "tokens-histogram", 300),
                outlier_list(hist["outlier_dims"], hist["outlier_values"])]
    chosen = parse_int_list(highlight, "Highlight dims", 0, x.shape[1] - 1, field="tokens-highlight")
    dens = density(x, req.pos)
    fig = density_figure({"value_edges": dens.value_edges, "counts": dens.counts,
                          "selected_values": dens.selected_values, "median_values": dens.median_values,
                          "highlighted": dens.highlighted, "chosen": chosen}, dim_i,
                         f"Scatter · {where} · all {run.n_tokens} tokens (density; y shows the 0.1–99.9% range, "
                         "double-click for all)")
    return [header, graph(fig, "tokens-scatter", "tokens-scatter", 340)]


def focus_panel(model_id: str, samples: Any, index: int, run: Any, pos: int) -> Any:
    """Links that open the selected token on the other pages, and the units most active on it."""
    from analysis.tokens import sample_list
    from components.urlstate import query_string

    runtime = get_runtime()
    opened = sample_list(samples)
    sample = opened[index] if index < len(opened) else None
    library = sample not in (None, "", "user")
    links = {"lens": "/lens" + query_string({"model": model_id, "sample": sample, "start": max(0, pos - 12),
                                             "width": 24, "focus": pos}) if library else None,
             "circuits": "/circuits" + query_string({"model": model_id, "sample": sample, "pos": pos})
             if library else None}
    neurons = [{"layer": n.layer, "unit": n.unit, "value": n.value,
                "href": "/neurons" + query_string({"model": model_id, "layer": n.layer, "neuron": n.unit})}
               for n in neurons_here(runtime, run, pos, k=8)]
    features = [{"unit": f.unit, "value": f.value,
                 "href": "/features" + query_string({"model": model_id, "sae": "embedded", "feature": f.unit,
                                                     **({"sample": sample} if library else {})})}
                for f in features_here(runtime, run, pos, k=6)]
    note = "" if library else "Lens and Circuits links need a library sample (your own text is not carried in a URL)."
    return focus_links(links, neurons, features, note)


@page_callback(PAGE, Output("tokens-panel", "children"),
               Input("tokens-meta", "data"), Input("tokens-selected", "data"), Input("tokens-tabs", "active_tab"),
               Input("tokens-site", "value"), Input("tokens-layer", "value"), Input("tokens-norm", "value"),
               Input("tokens-dim", "value"), Input("tokens-highlight", "value"), *TEXT_STATES,
               Input("tokens-head", "value"), Input("tokens-mean", "value"), Input("tokens-rope", "value"),
               edits_input())
def panel(meta: dict | None, sel: dict | None, tab: str, *args: Any) -> list:
    if not meta:
        return [graph(empty_figure("Pick a model and a sample."), "tokens-empty", "tokens", 120)]
    return compute_panel(meta, sel, tab, *args)


# ---- generate and describe ---------------------------------------------------------------------------

def continuation(meta: dict, sel: dict | None, new_tokens: Any, temperature: Any, seed: Any, model_id: str,
                 samples: Any, user_text: str | None, edits_store: dict | None) -> Any:
    """Clean | edited continuations of the text up to the selected token."""
    from analysis.generate import generate_pair

    runtime = get_runtime()
    req = view_request(meta, sel, "sum", "hook_resid_post", 0, 0, True, "from", "full", "tokens", 0, "none")
    run = open_samples(runtime, model_id, samples, user_text).runs[req.sample]
    pair = generate_pair(runtime, model_id, run.token_ids[:req.pos + 1], page_edits(runtime, model_id, edits_store),
                         new_tokens, temperature, seed)
    return generation_view(dataclasses.asdict(pair))


@page_callback(PAGE, Output("tokens-gen-out", "children"), Input("tokens-gen-run", "n_clicks"),
               State("tokens-meta", "data"), State("tokens-selected", "data"), State("tokens-gen-new", "value"),
               State("tokens-gen-temp", "value"), State("tokens-gen-seed", "value"), *TEXT_STATES,
               State("shell-edits-store", "data"), prevent_initial_call=True)
def on_generate(_clicks: int, meta: dict | None, sel: dict | None, *args: Any) -> Any:
    if not meta:
        return no_update
    return continuation(meta, sel, *args)


def description(meta: dict, sel: dict | None, layer: Any, model_id: str, samples: Any, user_text: str | None) -> Any:
    """Patchscopes on the selected (layer, token)."""
    from analysis.patchscope import describe_state

    runtime = get_runtime()
    req = view_request(meta, sel, "sum", "hook_resid_post", layer, 0, True, "from", "full", "tokens", 0, "none")
    run = open_samples(runtime, model_id, samples, user_text).runs[req.sample]
    result = describe_state(runtime, model_id, run.text, req.layer, req.pos)
    return description_view({**dataclasses.asdict(result), "text": result.text})


@page_callback(PAGE, Output("tokens-describe-out", "children"), Input("tokens-describe-run", "n_clicks"),
               State("tokens-meta", "data"), State("tokens-selected", "data"), State("tokens-layer", "value"),
               *TEXT_STATES, prevent_initial_call=True)
def on_describe(_clicks: int, meta: dict | None, sel: dict | None, *args: Any) -> Any:
    if not meta:
        return no_update
    return description(meta, sel, *args)


clientside_callback(
    "function(tab) { return tab === 'generate' ? {} : {display: 'none'}; }",
    Output("tokens-gen-box", "style"),
    Input("tokens-tabs", "active_tab"),
)


# ---- download, copy, URL ----------------------------------------------------------------------------

def vector_file(meta: dict, sel: dict | None, fmt: str, kind: str, layer: Any, norm: str, model_id: str,
                samples: Any, user_text: str | None) -> dict[str, Any]:
    """The selected token's activation vector as a dcc.Download payload (.npy or .csv)."""
    runtime = get_runtime()
    req = view_request(meta, sel, "sum", kind, layer, 0, True, "from", "full", "tokens", 0, norm)
    opened = open_samples(runtime, model_id, samples, user_text, {req.kind})
    vec = token_vector(runtime, opened.runs[req.sample], req.kind, req.layer, req.pos, req.norm)
    name = (f"{req.kind.replace('.', '_')}_L{req.layer}_s{req.sample}_t{req.pos}"
            + ("" if req.norm == "none" else f"_{req.norm}"))
    if fmt == "npy":
        return dcc.send_bytes(vector_npy(vec), f"{name}.npy")
    return dcc.send_string(vector_csv(vec), f"{name}.csv")


@page_callback(PAGE, Output("tokens-download", "data"),
               Input("tokens-dl-npy", "n_clicks"), Input("tokens-dl-csv", "n_clicks"),
               State("tokens-meta", "data"), State("tokens-selected", "data"), State("tokens-site", "value"),
               State("tokens-layer", "value"), State("tokens-norm", "value"), *TEXT_STATES, prevent_initial_call=True)
def download(_npy: int, _csv: int, meta: dict | None, sel: dict | None, *args: Any) -> Any:
    if not meta:
        from analysis.errors import InputError

        raise InputError("Nothing to download yet: pick a model and a sample.")
    return vector_file(meta, sel, "npy" if ctx.triggered_id == "tokens-dl-npy" else "csv", *args)


@page_callback(PAGE, Output("tokens-copy", "content"), Input("tokens-copy", "n_clicks"),
               State("tokens-sample", "value"), State("tokens-text", "value"), prevent_initial_call=True)
def copy_sample(_n: int, samples: Any, user_text: str | None) -> str:
    """The open samples' texts for the clipboard (separated by blank lines)."""
    from analysis.tokens import sample_list

    runtime = get_runtime()
    return "\n\n".join(runtime.text(i, user_text) for i in sample_list(samples))


@page_callback(PAGE, Output({"type": "url-state", "page": PAGE}, "data"),
               Input("tokens-model", "value"), Input("tokens-sample", "value"), *VIEW_INPUTS,
               Input("tokens-multiply", "value"), Input("tokens-newlines", "value"), Input("tokens-tabs", "active_tab"),
               Input("tokens-highlight", "value"))
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
clientside_callback(
    ClientsideFunction(namespace="tokens", function_name="controls"),
    Output("tokens-controls-sink", "children"),
    Input("tokens-tool", "value"),
    Input("tokens-tabs", "active_tab"),
)


@page_callback(PAGE, Output("tokens-multiply-ok", "data"), Input("tokens-multiply", "value"))
def check_multiply(multiply: Any) -> int:
    """The multiply factor is applied in the browser; the server still checks it and names the bound."""
    return parse_int(multiply, "Multiply", 1, 1000, field="tokens-multiply")
