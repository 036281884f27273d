"""Per-page renderers of ``python -m app.figure``: a page's state (URL vocabulary) -> its main figure.

Each renderer calls the page's own glue (``callbacks.<page>``) and figure builders (``components.<page>_*``)
with the analysis results, so the CLI draws exactly what the page draws. Only the Tokens "values" chart
(the per-token colouring of the strip, which the page paints in the browser) is drawn here as a bar chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from analysis.errors import GlassboxError, InputError


@dataclass
class Rendered:
    """A figure ready for ``figure_bytes`` plus the size it reads best at (None = the figure's own)."""

    figure: go.Figure
    width: int | None = None
    height: int | None = None


def _fig(value: Any) -> go.Figure:
    """A page figure (go.Figure, dict, or the dcc.Graph wrapping it) as a go.Figure."""
    figure = getattr(value, "figure", value)
    return figure if isinstance(figure, go.Figure) else go.Figure(figure, skip_invalid=True)


def _text_and_samples(state: dict[str, Any], default_sample: str) -> tuple[Any, str | None]:
    """(sample value, user text): ``text`` wins and selects the "your own text" sample."""
    from components.pickers import USER_SAMPLE

    if state.get("text") is not None:
        return USER_SAMPLE, state["text"]
    sample = state.get("sample") or default_sample
    if sample == USER_SAMPLE:
        raise InputError("The URL's sample is 'your own text', which links do not carry: pass --text.")
    return sample, None


# ---- tokens ------------------------------------------------------------------------------------

def tokens_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: values (the strip's colouring as bars: loss, attention, similarity...), hist or scatter."""
    from analysis.runtime import get_runtime
    from analysis.tokens import open_samples
    from callbacks import tokens as handlers

    runtime = get_runtime()
    st = handlers.initial_state({k: str(v) for k, v in state.items() if v is not None})
    model = state.get("model") or runtime.settings.default_model
    sample, text = _text_and_samples(state, runtime.samples.default_sample_id())
    samples = sample.split(",") if isinstance(sample, str) else sample
    _body, meta = handlers.load_view(model, samples, text)
    sel = {"s": st["s"], "i": st["t"]}
    kind = state.get("figure") or {"hist": "hist", "scatter": "scatter"}.get(st["tab"], "values")
    if kind in ("hist", "scatter"):
        children = handlers.compute_panel(meta, sel, kind, st["kind"], st["layer"], st["norm"], st["dim"], st["highlight"],
                                    model, samples, text)
        graphs = [c for c in children if hasattr(c, "figure")]
        return Rendered(_fig(graphs[0]), 900, 360)
    if kind != "values":
        raise InputError(f"Unknown Tokens figure '{kind}': use values, hist or scatter.")
    mean = st["head"] is None
    data = handlers.compute_paint(meta, sel, st["tool"], st["kind"], st["layer"], 0 if mean else st["head"], mean,
                            st["direction"], st["rope"], st["sim"], st["dim"], st["norm"], model, samples, text)
    s, t = data["sel"]
    opened = open_samples(runtime, model, samples, text)
    return Rendered(*token_values_figure(opened.runs[s].tokens, data["values"][s], t, data["label"], opened.titles[s]))


def token_values_figure(tokens: list[str], values: list[float | None], selected: int, label: str,
                        title: str) -> tuple[go.Figure, int, int]:
    """One bar per token (x = the token text), the selected token in the highlight colour."""
    from components.figures import SELECTED_COLOUR, themed
    from components.text import show_token

    names = [f"{show_token(tok, 14)} ·{i}" for i, tok in enumerate(tokens)]
    colours = [SELECTED_COLOUR if i == selected else "#90a4ae" for i in range(len(tokens))]
    fig = go.Figure(go.Bar(x=names, y=[v if v is not None else 0 for v in values], marker_color=colours,
                           hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    themed(fig, f"{title} · {label} · selected token #{selected}")
    fig.update_layout(xaxis=dict(tickangle=-60, tickfont=dict(size=10), type="category"),
                      yaxis=dict(title=dict(text=label)), bargap=0.15)
    return fig, max(600, 160 + 18 * len(tokens)), 420


# ---- lens --------------------------------------------------------------------------------------

def lens_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: grid (default; view logit/tuned/both/diff) or summary (per-layer curves)."""
    from analysis.runtime import get_runtime
    from callbacks import lens as handlers

    runtime = get_runtime()
    model = state.get("model") or runtime.settings.default_model
    sample, text = _text_and_samples(state, runtime.samples.default_sample_id())
    out = handlers.build_view(model, sample, text, state.get("stat") or "kl_final", state.get("view") or "logit",
                        state.get("residual") or "resid", state.get("div") or "js", state.get("start") or 0,
                        state.get("width") or 64, state.get("source"), state.get("scale") or "auto", paper=True)
    kind = state.get("figure") or "grid"
    if kind == "summary":
        return Rendered(out["summary"], 800, 400)
    if kind != "grid":
        raise InputError(f"Unknown Lens figure '{kind}': use grid or summary.")
    fig = out["figure"]
    fig.update_traces(textfont=dict(size=10), selector=dict(type="heatmap"))  # as the page's own export
    return Rendered(fig, max(500, int(120 + 34 * out["n_cols"])), int(fig.layout.height or 800))


# ---- regions -----------------------------------------------------------------------------------

def regions_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: heatmap (default, the layer's region grids per category) or graph (regions across layers)."""
    from analysis.settings import EMBEDDED_ENCODER
    from callbacks import regions as handlers

    source = state.get("source") or "builtin"
    if source != "builtin":
        raise InputError(f"Dataset source '{source}' is not reproducible from a link: only the built-in dataset is.")
    summary = handlers.load_dataset_summary("builtin", state.get("n") or 100, None, None, None, None, None)
    acts = handlers.run_extraction(summary, state.get("model") or EMBEDDED_ENCODER, state.get("pooling") or "first")
    view = handlers.reduce_view(acts, state.get("method") or "pca", state.get("k") or 2, state.get("grid") or 10,
                          state.get("seed", 42), None, None, state.get("layer"))
    store, cats = view["store"], _categories(state.get("cats"), acts["classes"])
    kind = state.get("figure") or "heatmap"
    if kind == "heatmap":
        heat, _box, _scatter = handlers.heatmap_view(store, view["layer"], cats, False)
        return Rendered(_fig(heat), 300 * max(1, len(cats)) + 120, 380)
    if kind == "graph":
        fig, _metrics, _degree = handlers.graph_view(store, cats[:2], state.get("threshold", 0.3), state.get("min_weight"))
        return Rendered(_fig(fig), 1000, 560)
    raise InputError(f"Unknown Regions figure '{kind}': use heatmap or graph.")


def _categories(value: Any, classes: list[str]) -> list[str]:
    cats = [c for c in str(value or "").split(",") if c] or list(classes)
    unknown = [c for c in cats if c not in classes]
    if unknown:
        raise InputError(f"Unknown categories {unknown}: the dataset has {classes}.")
    return cats


# ---- features ----------------------------------------------------------------------------------

def features_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: logits (default, the feature's logit effects) or hist (activation histogram; needs a scan)."""
    from analysis.features.scan import DEFAULT_TOKENS
    from analysis.runtime import get_runtime
    from callbacks import features as handlers

    runtime = get_runtime()
    model = state.get("model") or runtime.settings.default_model
    sample, text = _text_and_samples(state, runtime.samples.default_sample_id())
    out = handlers.dashboard(model, sample, text, state.get("sae") or "embedded", state.get("feature") or 0,
                       state.get("scan") or DEFAULT_TOKENS)
    if "no_sae" in out:
        raise GlassboxError("No SAE: the embedded SAE is missing (run `make sae`) — or pass --sae "
                            "<local dir | release:sae_id>.")
    kind = state.get("figure") or "logits"
    if kind not in ("logits", "hist"):
        raise InputError(f"Unknown Features figure '{kind}': use logits or hist.")
    return Rendered(_fig(out[kind]), 640, 520 if kind == "logits" else 320)


# ---- neurons -----------------------------------------------------------------------------------

def neurons_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: logits (default, the neuron's logit effects), quantiles, or graph (N2G-style pattern graph)."""
    from analysis.neurons import NeuronView, graph_for, neuron_record, parse_layer, parse_unit
    from analysis.params import parse_int
    from analysis.runtime import get_runtime
    from components import neurons_view as nv

    runtime = get_runtime()
    model = state.get("model") or runtime.settings.default_model
    if state.get("layer") in (None, ""):
        raise InputError("Neurons figures need --layer (a layer of the model's neuron index, or 'sae').")
    neuron = parse_int(state.get("neuron"), "neuron", 0, None, default=0)
    kind = state.get("figure") or "logits"
    if kind == "graph":
        data = graph_for(NeuronView.open(runtime, model), parse_layer(state["layer"]), parse_unit(neuron))
        return Rendered(_fig(nv.graph_figure(data)), 900, 420)
    record = neuron_record(runtime, model, state["layer"], neuron, n_snippets=1, n_similar=0)
    unit = f"Layer {state['layer']} · neuron {neuron}"
    if kind == "logits":
        fig = _fig(nv.logit_figure(record["logit_effects"]))
        return Rendered(fig.update_layout(title_text=f"{unit} · output-logit effects"), 640, 520)
    if kind == "quantiles":
        return Rendered(_fig(nv.quantile_figure(record["quantiles"], f"{unit} · activation quantiles")), 640, 320)
    raise InputError(f"Unknown Neurons figure '{kind}': use logits, quantiles or graph.")


# ---- circuits ----------------------------------------------------------------------------------

def circuits_figure(state: dict[str, Any]) -> Rendered:
    """``figure``: heads (default, the DLA layer x head heatmap), layers, strip, graph or patching."""
    from analysis.runtime import get_runtime
    from callbacks import circuits as handlers
    from components.pickers import USER_SAMPLE

    runtime = get_runtime()
    model = state.get("model") or runtime.settings.default_model
    if state.get("text") is None and not state.get("sample"):
        sample, text = USER_SAMPLE, handlers.DEFAULT_PROMPT
    else:
        sample, text = _text_and_samples(state, runtime.samples.default_sample_id())
    position, target, contrast = state.get("pos"), state.get("target") or "top", state.get("contrast")
    kind = state.get("figure") or "heads"
    if kind in ("heads", "layers", "strip"):
        out = handlers.attribution_view(model, sample, text, position, target, contrast)
        return Rendered(_fig(out[kind]), 900 if kind != "heads" else 640, None)
    if kind == "graph":
        out = handlers.graph_view(model, sample, text, position, state.get("threshold", 0.04), state.get("renorm", True))
        return Rendered(_fig(out["figure"]), 1100, None)
    if kind == "patching":
        body = runtime.text(sample, text)
        grid = handlers.patching_grid(runtime, model, body, state.get("corrupted") or None,
                                      noise_positions=state.get("noise"), seed=state.get("seed", 0),
                                      site=state.get("site") or "resid", target=target, contrast=contrast,
                                      positions=state.get("positions"))
        return Rendered(_fig(handlers.patch_figure(grid, state.get("scale") != "raw")), 900, None)
    raise InputError(f"Unknown Circuits figure '{kind}': use heads, layers, strip, graph or patching.")


RENDERERS = {"tokens": tokens_figure, "lens": lens_figure, "regions": regions_figure, "features": features_figure,
             "neurons": neurons_figure,
             "circuits": circuits_figure}
