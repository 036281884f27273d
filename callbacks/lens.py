"""Lens page glue: controls -> analysis.lens -> components.lens_grid (and the training job)."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, ctx, dcc, no_update

from analysis.edits import edits_text
from analysis.errors import GlassboxError, InputError
from analysis.lens import (
    DIVERGENCES,
    MAX_WIDTH,
    RESIDUALS,
    STATISTICS,
    TrainConfig,
    default_lens_dir,
    lens_difference,
    lens_edit_shift,
    lens_grid,
    train_tuned_lens,
)
from analysis.params import parse_choice, parse_int
from analysis.runtime import get_runtime
from callbacks.common import mark_field, page_callback, register_job, register_picker_callbacks
from callbacks.edits import edits_input, page_edits
from callbacks.shell import register_model_loading
from components.figures import figure_bytes
from components.lens_grid import (
    SCALES,
    difference_figure,
    grid_figure,
    highlight_column,
    pair_figure,
    summary_figure,
)

P = "lens"
VIEWS = {"logit": "Logit lens", "tuned": "Tuned lens", "both": "Both (logit above tuned)",
         "side": "Side by side (logit | tuned)", "diff": "Difference",
         "edited": "Clean above edited (logit lens)", "edit": "Edit effect (KL clean ‖ edited)"}
CONTROL_IDS = ["model", "sample", "text", "stat", "view", "residual", "div", "start", "width", "source", "scale"]
register_picker_callbacks(P)
register_model_loading(P)


def default_view(model_id: str) -> str:
    """Open on both lenses when a tuned lens exists for the model (the shipped one, or one trained here)."""
    return "both" if default_lens_dir(get_runtime().settings, model_id) is not None else "logit"


def _grid_data(grid) -> dict:
    d = grid.to_dict()
    return {k: d[k] for k in ("tokens", "next_tokens", "layer_labels", "top_tokens", "values", "statistic", "start")}


def build_view(model: str, sample: str | None, text: str | None, stat: str, view: str, residual: str, div: str,
               start: Any, width: Any, source: str | None, scale: str = "auto", paper: bool = False,
               edits_store: dict | None = None, focus: int | None = None) -> dict[str, Any]:
    """Everything the page shows for one set of controls: grid figure, summary curves, window facts; the
    edit views read the shared edit list (clean above edited, or the per-cell KL between them)."""
    runtime = get_runtime()
    body = runtime.text(sample, text, field="lens-text")
    stat = parse_choice(stat, "Statistic", STATISTICS)
    view = parse_choice(view, "View", VIEWS)
    residual = parse_choice(residual, "Stream", RESIDUALS)
    scale = parse_choice(scale or "auto", "Colour scale", SCALES)
    start_i = parse_int(start, "Window start", 0, runtime.settings.max_tokens, default=0, field="lens-start")
    width_i = parse_int(width, "Window width", 1, MAX_WIDTH, field="lens-width")
    if view == "diff":
        div = parse_choice(div, "Divergence", DIVERGENCES)
    source = (source or "").strip() or None
    source_field = "lens-source" if source else None  # a typed lens that fails is marked on its box
    stat_label = STATISTICS[stat]
    base = lens_grid(runtime, model, body, lens="logit", statistic=stat, start=start_i, width=width_i, residual=residual)
    window = f"positions {base.start}–{base.start + len(base.tokens) - 1} of {base.n_tokens}"
    curves = {"logit": base.summary()}
    tuned = None
    tuned_error = ""
    if view in ("tuned", "both", "side", "diff"):  # these need the tuned lens; the others show it when present
        tuned = lens_grid(runtime, model, body, lens="tuned", statistic=stat, start=start_i, width=width_i,
                          residual=residual, tuned_source=source, tuned_field=source_field)
    else:
        try:
            tuned = lens_grid(runtime, model, body, lens="tuned", statistic=stat, start=start_i, width=width_i,
                              residual=residual, tuned_source=source, tuned_field=source_field)
        except GlassboxError as exc:  # the summary just shows the logit lens then; the note says why once
            tuned_error = str(exc)
            if source_field:  # a lens the user typed: marked on its box too
                mark_field(exc)
    if tuned is not None:
        curves["tuned"] = tuned.summary()
    edits = page_edits(runtime, model, edits_store) if view in ("edited", "edit") else []
    if view in ("edited", "edit") and not edits:
        raise InputError("This view needs an edit list: open Edits above and type one (e.g. neuron:L5.N123).")
    edited = None
    if edits:
        edited = lens_grid(runtime, model, body, lens="logit", statistic=stat, start=start_i, width=width_i,
                           residual=residual, edits=edits)
        curves["edited logit"] = edited.summary()
    title_tail = f"{model.split(':')[-1]} · {window}"
    hover = not paper
    if view == "logit":
        fig = grid_figure(_grid_data(base), stat_label, f"Logit lens · {stat_label} · {title_tail}",
                          base.top_k_probs if hover else None, base.top_k_tokens if hover else None, scale=scale)
    elif view == "tuned":
        fig = grid_figure(_grid_data(tuned), stat_label, f"Tuned lens · {stat_label} · {title_tail}",
                          tuned.top_k_probs if hover else None, tuned.top_k_tokens if hover else None, scale=scale)
    elif view in ("both", "side"):
        panels = [(_grid_data(g), name, g.top_k_probs if hover else None, g.top_k_tokens if hover else None)
                  for g, name in ((base, "logit lens"), (tuned, "tuned lens"))]
        fig = pair_figure(panels, stat_label, f"{stat_label} · {title_tail}", side_by_side=view == "side", scale=scale)
    elif view == "edited":
        panels = [(_grid_data(g), name, g.top_k_probs if hover else None, g.top_k_tokens if hover else None)
                  for g, name in ((base, "clean"), (edited, "edited"))]
        fig = pair_figure(panels, stat_label, f"Logit lens, clean above edited · {stat_label} · {title_tail}",
                          side_by_side=False, scale=scale)
    elif view == "edit":
        values = lens_edit_shift(runtime, model, body, edits, start=start_i, width=width_i, residual=residual)
        label = "KL(clean ‖ edited)"
        fig = difference_figure(_grid_data(edited), values, label,
                                f"Edit effect · logit lens · {label} per cell · {title_tail}", scale=scale,
                                top_label="edited top")
    else:
        values = lens_difference(runtime, model, body, kind=div, start=start_i, width=width_i, residual=residual,
                                 tuned_source=source)
        fig = difference_figure(_grid_data(tuned), values, DIVERGENCES[div],
                                f"Tuned vs logit lens · {DIVERGENCES[div]} · {title_tail}", scale=scale)
    if focus is not None and base.start <= focus < base.start + len(base.tokens) and view not in ("both", "side",
                                                                                                 "edited"):
        highlight_column(fig, focus - base.start, len(base.layer_labels))
    summary = summary_figure(curves, base.layer_labels, f"Per-layer means over {window}")
    bottom = "the embedding" if residual == "resid" else f"block 0's {'attention' if residual == 'attn' else 'MLP'} output"
    note = f"{window}. Rows: {base.layer_labels[0]} … {base.layer_labels[-1]} (bottom = {bottom})."
    if tuned is not None:
        note += f" Tuned lens: {tuned.lens_source}."
    if edited is not None:
        note += f" Edits: {edits_text(edits)}."
    elif tuned_error:  # the full reason once, on the tuned views' alert; here one line
        note += (" Tuned lens: none for this model yet — train one below or enter one above."
                 if "No tuned lens" in tuned_error else f" {tuned_error}")
    return {"figure": fig, "summary": summary, "n_tokens": base.n_tokens, "note": note, "n_cols": len(base.tokens)}


@page_callback(
    P, Output(f"{P}-grid", "figure"), Output(f"{P}-summary", "figure"), Output(f"{P}-start", "max"),
    Output(f"{P}-note", "children"), Output(f"{P}-div-col", "style"),
    *[Input(f"{P}-{name}", "value") for name in CONTROL_IDS], Input(f"{P}-train-done", "data"), edits_input(),
    State(f"{P}-focus", "data"),
)
def update(model, sample, text, stat, view, residual, div, start, width, source, scale, _trained, edits_store=None,  # type: ignore[no-untyped-def]
           focus=None):
    out = build_view(model, sample, text, stat, view, residual, div, start, width, source, scale,
                     edits_store=edits_store, focus=focus)
    return (out["figure"], out["summary"], max(1, out["n_tokens"] - 1), out["note"],
            {} if view == "diff" else {"display": "none"})


@page_callback(P, Output({"type": "url-state", "page": P}, "data"), *[Input(f"{P}-{name}", "value") for name in CONTROL_IDS],
               State(f"{P}-focus", "data"))
def url_state(model, sample, _text, stat, view, residual, div, start, width, source, scale, focus=None):  # type: ignore[no-untyped-def]
    return {"model": model, "sample": sample, "stat": stat, "view": view, "residual": residual, "div": div,
            "start": start, "width": width, "source": source or None, "scale": scale, "focus": focus}


@page_callback(
    P, Output(f"{P}-download", "data"),
    Input(f"{P}-export-svg", "n_clicks"), Input(f"{P}-export-png", "n_clicks"), Input(f"{P}-export-pdf", "n_clicks"),
    *[State(f"{P}-{name}", "value") for name in CONTROL_IDS], State("shell-edits-store", "data"),
    prevent_initial_call=True,
)
def export(_svg, _png, _pdf, model, sample, text, stat, view, residual, div, start, width, source, scale, edits_store):  # type: ignore[no-untyped-def]
    """The grid rendered server-side in the paper theme, sized so every token stays legible."""
    fmt = (ctx.triggered_id or "lens-export-svg").rsplit("-", 1)[-1]
    out = build_view(model, sample, text, stat, view, residual, div, start, width, source, scale, paper=True,
                     edits_store=edits_store)
    return dcc.send_bytes(export_bytes(out, fmt), f"lens-{view}-{stat}.{fmt}")


def export_bytes(out: dict[str, Any], fmt: str) -> bytes:
    fig = out["figure"]
    width = int(120 + 34 * out["n_cols"])
    height = int(fig.layout.height or 800)
    fig.update_traces(textfont=dict(size=10), selector=dict(type="heatmap"))
    return figure_bytes(fig, fmt, scale=2 if fmt == "png" else 1, width=max(width, 500), height=height)


def train_job(model: str, steps: Any) -> tuple[str, str, Any]:
    """The page's Train button: the same function as ``make lens``, as a server job (one per model)."""
    steps_i = parse_int(steps, "Training steps", 1, 5000, field="lens-train-steps")
    cfg = TrainConfig(model_id=model, steps=steps_i)
    runtime = get_runtime()
    return f"lens-train:{model}", f"Training a tuned lens for {model}", lambda job: train_tuned_lens(runtime, cfg, job)


def describe_training(result: Any) -> str:
    return (f"Trained {result.steps_done} steps on {result.tokens_seen:,} tokens in {result.seconds / 60:.1f} min; "
            f"saved to {result.out_dir}. Held-out mean KL to final: logit lens {result.heldout_kl_logit:.3f}, "
            f"tuned lens {result.heldout_kl_tuned:.3f} nats.")


register_job(P, f"{P}-train", [State(f"{P}-model", "value"), State(f"{P}-train-steps", "value")], train_job,
             describe_training)


def tokens_href(model: str, sample: str | None, start: Any, click: dict | None, n_layers: int) -> str | None:
    """The Tokens page at a clicked cell's layer and position (library samples: a URL cannot carry your text)."""
    from components.urlstate import query_string

    if not click or not click.get("points") or sample in (None, "", "user"):
        return None
    point = click["points"][0]
    column, row = int(point.get("x", 0)), int(point.get("y", 0))
    first = parse_int(start, "Window start", 0, None, default=0)
    kind, layer = ("hook_resid_pre", row) if row < n_layers else ("hook_resid_post", n_layers - 1)
    return "/tokens" + query_string({"model": model, "sample": sample, "site": kind, "layer": layer,
                                     "t": first + column, "tool": "sum", "tab": "token"})


@page_callback(P, Output("url", "href", allow_duplicate=True), Input(f"{P}-grid", "clickData"),
               State(f"{P}-model", "value"), State(f"{P}-sample", "value"), State(f"{P}-start", "value"),
               prevent_initial_call=True)
def open_in_tokens(click, model, sample, start):  # type: ignore[no-untyped-def]
    """Clicking a cell opens Tokens at that layer and position."""
    href = tokens_href(model, sample, start, click, get_runtime().model(model).info.n_layers)
    return href if href else no_update
