"""Controls of the Tokens page: tool, site, layer/head, attention and similarity options, display."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

TOOL_OPTIONS = [
    ("predictions", "Predictions"), ("loss", "Loss"), ("attention", "Attention"),
    ("similarity", "Similarity"), ("sum", "Σ|x|"), ("dimension", "Dimension"), ("edit", "Edit effect"),
]
SITE_OPTIONS = [
    ("hook_resid_pre", "residual (block input)"), ("hook_resid_mid", "residual (after attention)"),
    ("hook_resid_post", "residual (block output)"), ("hook_attn_out", "attention output"),
    ("hook_mlp_out", "MLP output"), ("mlp.hook_post", "MLP neurons"),
]
ROPE_OPTIONS = [("full", "full (weights)"), ("applied", "RoPE applied (scores)"),
                ("not_applied", "RoPE not applied (scores)")]
SIM_OPTIONS = [("tokens", "tokens (to selected)"), ("prev_layer", "previous layer"),
               ("prev_residual", "previous residual")]
NORM_OPTIONS = [("none", "none"), ("normalized", "normalized"), ("no_outliers", "normalized excl. outliers")]


def _opts(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"label": label, "value": value} for value, label in pairs]


def _field(label: str, control: Any, field_id: str | None = None, width: str = "auto",
           feedback: str | None = None) -> html.Div:
    kwargs = {"id": field_id} if field_id else {}
    children = [dbc.Label(label, className="small text-muted mb-0"), control]
    if feedback:
        children.append(dbc.FormFeedback(type="invalid", id=f"{feedback}-feedback", className="gb-feedback"))
    return html.Div(children, className="gb-field me-3 mb-2", style={"width": width}, **kwargs)


def number(field_id: str, value: int, width: str = "5.5rem") -> dbc.Input:
    """Number box: type a value or step it with the arrow keys. No min/max/step in the browser: an
    out-of-range entry reaches the server, which names the bound beside the field (never a silent clamp)."""
    return dbc.Input(id=field_id, type="number", value=value, debounce=False, size="sm", style={"width": width})


def controls(state: dict[str, Any]) -> html.Div:
    """All view controls, initialised from the URL state; each tool shows only the ones it reads
    (``tokens.controls`` in assets/tokens.js toggles them)."""
    mean = state["head"] is None
    row1 = html.Div(
        [
            _field("Tool", dbc.RadioItems(id="tokens-tool", options=_opts(TOOL_OPTIONS), value=state["tool"],
                                          inline=True, className="small", inputClassName="me-1")),
            _field("Site", dcc.Dropdown(id="tokens-site", options=_opts(SITE_OPTIONS), value=state["kind"],
                                        clearable=False, className="small"), "tokens-ctl-site", width="15rem"),
            _field("Layer", number("tokens-layer", state["layer"]), "tokens-ctl-layer", feedback="tokens-layer"),
            _field("Head", html.Div([
                number("tokens-head", 0 if mean else state["head"]),
                dbc.Checkbox(id="tokens-mean", label="mean", value=mean, className="ms-2 small"),
            ], className="d-flex align-items-center"), "tokens-ctl-head", feedback="tokens-head"),
            _field("Attention", dbc.RadioItems(id="tokens-direction", value=state["direction"], inline=True,
                                               className="small", options=[
                                                   {"label": "from token", "value": "from"},
                                                   {"label": "opposite (to token)", "value": "to"}]),
                   "tokens-ctl-direction"),
            _field("RoPE", dcc.Dropdown(id="tokens-rope", options=_opts(ROPE_OPTIONS), value=state["rope"],
                                        clearable=False, className="small"), "tokens-ctl-rope", width="14rem"),
            _field("Multiply", number("tokens-multiply", state["multiply"]), "tokens-ctl-multiply",
                   feedback="tokens-multiply"),
            _field("Similarity", dcc.Dropdown(id="tokens-sim", options=_opts(SIM_OPTIONS), value=state["sim"],
                                              clearable=False, className="small"), "tokens-ctl-sim", width="12rem"),
            _field("Dimension", number("tokens-dim", state["dim"]), "tokens-ctl-dim", feedback="tokens-dim"),
            _field("Normalization", dcc.Dropdown(id="tokens-norm", options=_opts(NORM_OPTIONS), value=state["norm"],
                                                 clearable=False, className="small"), "tokens-ctl-norm", width="14rem"),
            _field("Highlight dims (scatter)", dbc.Input(id="tokens-highlight", type="text", value=state["highlight"],
                                                         placeholder="e.g. 12, 305", debounce=True, size="sm",
                                                         style={"width": "9rem"}),
                   "tokens-ctl-highlight", feedback="tokens-highlight"),
        ],
        className="d-flex flex-wrap align-items-end",
    )
    row2 = html.Div(
        [
            _field("Opacity", dcc.Slider(id="tokens-opacity", min=0.1, max=1, step=0.05, value=state["opacity"],
                                         marks=None, tooltip={"placement": "bottom"}), width="9rem"),
            _field("Newlines", dbc.Checkbox(id="tokens-newlines", label="show ↵ tokens", value=state["newlines"],
                                            className="small")),
            html.Div(id="tokens-controls-sink", style={"display": "none"}),
        ],
        className="d-flex flex-wrap align-items-end",
    )
    return html.Div([row1, row2], className="gb-controls mb-2")


def download_buttons() -> html.Div:
    return html.Div(
        [
            html.Span("Selected token's vector (site, layer, normalization above): ", className="small me-2"),
            dbc.Button(".npy", id="tokens-dl-npy", size="sm", color="secondary", outline=True, className="me-1"),
            dbc.Button(".csv", id="tokens-dl-csv", size="sm", color="secondary", outline=True),
            dcc.Download(id="tokens-download"),
        ],
        className="d-flex align-items-center mt-2",
    )


def generate_box() -> html.Div:
    """The Generate tab's controls (kept across token changes): continue the text from the selected token,
    clean and with the shared edit list; describe the selected (layer, token) state (Patchscopes)."""
    def box(field_id: str, label: str, value: Any, width: str = "5rem") -> html.Div:
        return html.Div([dbc.Label(label, html_for=field_id, className="small text-muted mb-0"),
                         dbc.Input(id=field_id, value=value, size="sm", type="text", debounce=True,
                                   style={"width": width}),
                         dbc.FormFeedback(type="invalid", id=f"{field_id}-feedback", className="gb-feedback")], className="me-2")

    return html.Div([
        html.Div([box("tokens-gen-new", "New tokens (1-64)", 24), box("tokens-gen-temp", "Temperature (0 = greedy)", 0),
                  box("tokens-gen-seed", "Seed", 0),
                  dbc.Button("Continue", id="tokens-gen-run", size="sm", color="primary", className="align-self-end",
                             n_clicks=0)], className="d-flex flex-wrap align-items-start"),
        dcc.Loading(html.Div(id="tokens-gen-out", className="mt-2"), type="dot", delay_show=250),
        html.Hr(className="my-2"),
        html.Div([html.B("Describe this hidden state", className="small me-2"),
                  html.Span("Patchscopes: the block output at the Layer control and the selected token, injected at the "
                            "last token of 'cat->cat; 135->135; hello->hello; ?' after the same layer; greedy.",
                            className="small text-muted")]),
        dbc.Button("Describe", id="tokens-describe-run", size="sm", color="secondary", outline=True, className="mt-1",
                   n_clicks=0),
        dcc.Loading(html.Div(id="tokens-describe-out", className="mt-2"), type="dot", delay_show=250),
    ], id="tokens-gen-box", style={"display": "none"}, className="pt-2")
