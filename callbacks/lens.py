"""Lens page glue: controls -> analysis.lens -> components.lens_grid (and the training job)."""

from __future__ import annotations

import time
from typing import Any

from dash import Input, Output, State, callback, ctx, dcc, no_update

from analysis.errors import GlassboxError
from analysis.lens import DIVERGENCES, STATISTICS, lens_difference, lens_grid
from analysis.runtime import get_runtime
from callbacks.common import friendly, register_picker_callbacks, resolve_text
from components.figures import empty_figure, figure_bytes
from components.lens_grid import difference_figure, grid_figure, pair_figure, summary_figure

P = "lens"
VIEWS = {"logit": "Logit lens", "tuned": "Tuned lens", "both": "Both (logit above tuned)",
         "side": "Side by side (logit | tuned)", "diff": "Difference"}
CONTROL_IDS = ["model", "sample", "text", "stat", "view", "residual", "div", "start", "width", "source"]
register_picker_callbacks(P)


def _grid_data(grid) -> dict:
    d = grid.to_dict()
    return {k: d[k] for k in ("tokens", "next_tokens", "layer_labels", "top_tokens", "values", "statistic", "start")}


def _int(value: Any, default: int, low: int, high: int, name: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        return default
    if out < low or out > high:
        raise GlassboxError(f"{name} must be between {low} and {high}, got {out}.")
    return out


def build_view(model: str, sample: str | None, text: str | None, stat: str, view: str, residual: str, div: str,
               start: Any, width: Any, source: str | None, paper: bool = False) -> dict[str, Any]:
    """Everything the page shows for one set of controls: grid figure, summary curves, window facts."""
    runtime = get_runtime()
    body = resolve_text(sample, text, runtime)
    start_i = _int(start, 0, 0, runtime.settings.max_tokens, "Window start")
    width_i = _int(width, 64, 1, 256, "Window width")
    source = (source or "").strip() or None
    if view not in VIEWS:
        raise GlassboxError(f"Unknown view '{view}' (choose {', '.join(VIEWS)}).")
    stat_label = STATISTICS.get(stat, stat)
    base = lens_grid(runtime, model, body, lens="logit", statistic=stat, start=start_i, width=width_i, residual=residual)
    window = f"positions {base.start}–{base.start + len(base.tokens) - 1} of {base.n_tokens}"
    curves = {"logit": base.summary()}
    tuned = None
    tuned_error = ""
    if view != "logit":
        tuned = lens_grid(runtime, model, body, lens="tuned", statistic=stat, start=start_i, width=width_i,
                          residual=residual, tuned_source=source)
    else:
        try:
            tuned = lens_grid(runtime, model, body, lens="tuned", statistic=stat, start=start_i, width=width_i,
                              residual=residual, tuned_source=source)
        except GlassboxError as exc:  # the summary just shows the logit lens then
            tuned_error = str(exc)
    if tuned is not None:
        curves["tuned"] = tuned.summary()
    model_name = model.split(":")[-1]
    title_tail = f"{model_name} · {window}"
    hover = not paper
    if view == "logit":
        fig = grid_figure(_grid_data(base), stat_label, f"Logit lens · {stat_label} · {title_tail}",
                          base.top_k_probs if hover else None, base.top_k_tokens if hover else None)
    elif view == "tuned":
        fig = grid_figure(_grid_data(tuned), stat_label, f"Tuned lens · {stat_label} · {title_tail}",
                          tuned.top_k_probs if hover else None, tuned.top_k_tokens if hover else None)
    elif view in ("both", "side"):
        panels = [(_grid_data(g), name, g.top_k_probs if hover else None, g.top_k_tokens if hover else None)
                  for g, name in ((base, "logit lens"), (tuned, "tuned lens"))]
        fig = pair_figure(panels, stat_label, f"{stat_label} · {title_tail}", side_by_side=view == "side")
    elif view == "diff":
        if div not in DIVERGENCES:
            raise GlassboxError(f"Unknown divergence '{div}' (choose {', '.join(DIVERGENCES)}).")
        values = lens_difference(runtime, model, body, kind=div, start=start_i, width=width_i, residual=residual,
                                 tuned_source=source)
        fig = difference_figure(_grid_data(tuned), values, DIVERGENCES[div],
                                f"Tuned vs logit lens · {DIVERGENCES[div]} · {title_tail}")
    else:
        raise GlassboxError(f"Unknown view '{view}' (choose {', '.join(VIEWS)}).")
    summary = summary_figure(curves, base.layer_labels, f"Per-layer means over {window}")
    note = f"{window}. Rows: {base.layer_labels[0]} … {base.layer_labels[-1]} (bottom = embedding)."
    if tuned is not None:
        note += f" Tuned lens: {tuned.lens_source}."
    elif tuned_error:
        note += " No tuned lens yet (Train below, or give a pretrained lens)."
    return {"figure": fig, "summary": summary, "n_tokens": base.n_tokens, "note": note, "n_cols": len(base.tokens)}


@callback(
    Output(f"{P}-grid", "figure"), Output(f"{P}-summary", "figure"), Output(f"{P}-start", "max"),
    Output(f"{P}-note", "children"), Output(f"{P}-error", "children"), Output(f"{P}-error", "is_open"),
    Output({"type": "url-state", "page": P}, "data"), Output(f"{P}-div-col", "style"),
    *[Input(f"{P}-{name}", "value") for name in CONTROL_IDS], Input(f"{P}-trained", "data"),
)
def update(model, sample, text, stat, view, residual, div, start, width, source, _trained):  # type: ignore[no-untyped-def]
    state = {"model": model, "sample": sample, "stat": stat, "view": view, "residual": residual, "div": div,
             "start": start, "width": width, "source": source or None}
    div_style = {} if view == "diff" else {"display": "none"}
    try:
        out = build_view(model, sample, text, stat, view, residual, div, start, width, source)
    except Exception as exc:  # noqa: BLE001 - shown in the page, server keeps serving
        msg = friendly(exc)
        return empty_figure(msg), empty_figure(), no_update, "", msg, True, state, div_style
    max_start = max(0, out["n_tokens"] - 1)
    return out["figure"], out["summary"], max_start, out["note"], "", False, state, div_style


@callback(
    Output(f"{P}-download", "data"), Output(f"{P}-error", "children", allow_duplicate=True),
    Output(f"{P}-error", "is_open", allow_duplicate=True),
    Input(f"{P}-export-svg", "n_clicks"), Input(f"{P}-export-png", "n_clicks"), Input(f"{P}-export-pdf", "n_clicks"),
    *[State(f"{P}-{name}", "value") for name in CONTROL_IDS],
    prevent_initial_call=True,
)
def export(_svg, _png, _pdf, model, sample, text, stat, view, residual, div, start, width, source):  # type: ignore[no-untyped-def]
    """The grid rendered server-side in the paper theme, sized so every token stays legible."""
    fmt = (ctx.triggered_id or "lens-export-svg").rsplit("-", 1)[-1]
    try:
        out = build_view(model, sample, text, stat, view, residual, div, start, width, source, paper=True)
        data = export_bytes(out, fmt)
    except Exception as exc:  # noqa: BLE001
        return no_update, friendly(exc), True
    return dcc.send_bytes(data, f"lens-{view}-{stat}.{fmt}"), no_update, no_update


def export_bytes(out: dict[str, Any], fmt: str) -> bytes:
    fig = out["figure"]
    width = int(120 + 34 * out["n_cols"])
    height = int(fig.layout.height or 800)
    fig.update_traces(textfont=dict(size=10), selector=dict(type="heatmap"))
    return figure_bytes(fig, fmt, scale=2 if fmt == "png" else 1, width=max(width, 500), height=height)


def train_config(model: str, steps: int):
    from analysis.lens_train import TrainConfig

    return TrainConfig(model_id=model, steps=steps)


def train_job(set_progress, model: str, steps: Any) -> str:
    """The page's Train button: the same function as ``make lens``; progress as (percent, label)."""
    from analysis.lens_train import train_tuned_lens

    steps_i = _int(steps, 48, 1, 2000, "Training steps")
    cfg = train_config(model, steps_i)
    started = time.perf_counter()

    def report(done: int, total: int, loss: float) -> None:
        left = (time.perf_counter() - started) / done * (total - done)
        set_progress((int(100 * done / total), f"step {done}/{total} · KL {loss:.2f} · ~{left / 60:.0f} min left"))

    set_progress((0, "loading model and corpus…"))
    result = train_tuned_lens(get_runtime(), cfg, progress=report)
    set_progress((100, "done"))
    return (f"Trained {result.steps_done} steps on {result.tokens_seen:,} tokens in {result.seconds / 60:.1f} min; "
            f"saved to {result.out_dir}. Held-out mean KL to final: logit lens {result.heldout_kl_logit:.3f}, "
            f"tuned lens {result.heldout_kl_tuned:.3f} nats.")


@callback(
    Output(f"{P}-train-msg", "children"), Output(f"{P}-trained", "data"),
    Input(f"{P}-train", "n_clicks"), State(f"{P}-model", "value"), State(f"{P}-train-steps", "value"),
    background=True,
    progress=[Output(f"{P}-train-progress", "value"), Output(f"{P}-train-progress", "label")],
    cancel=[Input(f"{P}-train-cancel", "n_clicks")],
    running=[(Output(f"{P}-train", "disabled"), True, False), (Output(f"{P}-train-cancel", "disabled"), False, True)],
    prevent_initial_call=True,
)
def on_train(set_progress, _clicks, model, steps):  # type: ignore[no-untyped-def]
    try:
        return train_job(lambda v: set_progress(list(v)), model, steps), time.time()
    except Exception as exc:  # noqa: BLE001
        return friendly(exc), no_update
