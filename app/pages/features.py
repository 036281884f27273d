"""Features (/features): what does this SAE feature mean? Dashboard, token lists, definition tree,
steering and search, for sae-lens SAEs (online) or the embedded SmolLM2 SAE (``make sae``)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.features  # noqa: F401 - registers the callbacks
from analysis.features_scan import DEFAULT_TOKENS, MAX_TOKENS
from analysis.features_tree import DEFAULT_PROMPT
from analysis.runtime import get_runtime
from callbacks.common import model_labels, sample_rows
from components.export import export_bar
from components.feedback import error_alert, loading
from components.figures import graph
from components.pickers import picker_row
from components.urlstate import int_arg, url_state

dash.register_page(__name__, path="/features", name="Features", title="Glassbox · Features")
P = "features"


def _num(id_: str, label: str, value, step="any", width="6.5rem", **kw) -> html.Div:
    return html.Div([dbc.Label(label, html_for=f"{P}-{id_}", className="small mb-0"),
                     dcc.Input(id=f"{P}-{id_}", type="number", value=value, step=step, debounce=True,
                               className="form-control form-control-sm", style={"width": width}, **kw)],
                    className="me-3")


def _vector_controls() -> dbc.Card:
    kind = html.Div([dbc.Label("Vector", className="small mb-0"),
                     dbc.RadioItems(id=f"{P}-kind", value="decoder", inline=True, className="small",
                                    options=[{"label": "decoder", "value": "decoder"},
                                             {"label": "encoder", "value": "encoder"}])], className="me-3")
    return dbc.Card(dbc.CardBody([
        html.Div("Feature vector → embedding space (token lists and definition tree)", className="small fw-bold mb-1"),
        html.Div([kind, _num("exponent", "Exponent m", 1.4), _num("offset", "Centroid offset", 1.0),
                  _num("scale", "Scaling", 3.8), _num("pca", "PCA-1 weight", 0.0)], className="d-flex flex-wrap"),
    ]), className="mb-2")


def _dashboard_tab(scan_tokens: int) -> html.Div:
    scan = html.Div([
        _num("scan-tokens", "Scan tokens", scan_tokens, step=1000, min=1000, width="8rem"),
        dbc.Button("Scan corpus", id=f"{P}-scan", size="sm", color="secondary", className="me-2 mt-3"),
        dbc.Button("Cancel", id=f"{P}-scan-cancel", size="sm", color="link", disabled=True, className="mt-3"),
        dbc.Progress(id=f"{P}-scan-progress", value=0, style={"width": "12rem", "height": "1.2rem"},
                     className="ms-2 mt-3"),
        html.Span(id=f"{P}-scan-msg", className="small text-muted ms-2 mt-3"),
    ], className="d-flex flex-wrap align-items-start mb-2")
    return html.Div([
        html.Div(id=f"{P}-info"),
        loading(html.Div(id=f"{P}-strip-box", className="mb-2")),
        html.Div(id=f"{P}-badges", className="mb-2"),
        dbc.Row([
            dbc.Col([graph(None, f"{P}-logits", "feature-logit-effects"), export_bar(f"{P}-logits", "feature-logits")],
                    md=5),
            dbc.Col([html.Div(id=f"{P}-density-box"), graph(None, f"{P}-hist", "feature-histogram", height=260),
                     graph(None, f"{P}-density-fig", "feature-density", height=260)], md=7),
        ]),
        scan,
        loading(html.Div(id=f"{P}-examples")),
    ])


def _tokens_tab() -> html.Div:
    return html.Div([
        html.P("Tokens ranked by (1 − cos(v, e_t))^m / (1 − cos(centroid, e_t)): near the feature vector, "
               "far from the generic centroid direction. Top 100.", className="small text-muted"),
        dbc.Button("Compute token list", id=f"{P}-tokens-run", size="sm", color="primary", className="me-2"),
        dbc.Button("Download CSV", id=f"{P}-tokens-csv", size="sm", color="secondary", outline=True),
        dcc.Download(id=f"{P}-tokens-download"), dcc.Store(id=f"{P}-tokens-store"),
        loading(html.Div(id=f"{P}-tokens-box", className="mt-2")),
    ])


def _tree_tab() -> html.Div:
    controls = html.Div([
        html.Div([dbc.Label("Base prompt (<ghost> = the feature vector)", className="small mb-0"),
                  dbc.Input(id=f"{P}-prompt", value=DEFAULT_PROMPT, size="sm", debounce=True)],
                 className="me-3", style={"minWidth": "26rem"}),
        _num("topk", "Top-k", 5, step=1, min=1, max=10, width="4.5rem"),
        _num("cutoff", "Cum. prob. cut-off", 5e-5, width="7rem"),
        _num("depth", "Max depth", 25, step=1, min=1, max=40, width="4.5rem"),
        dbc.Button("Build tree", id=f"{P}-tree-run", size="sm", color="primary", className="mt-3 me-1"),
        dbc.Button("Cancel", id=f"{P}-tree-cancel", size="sm", color="link", disabled=True, className="mt-3"),
    ], className="d-flex flex-wrap align-items-start mb-2")
    return html.Div([
        controls,
        html.Div([dbc.Progress(id=f"{P}-tree-progress", value=0, style={"width": "14rem", "height": "1.2rem"}),
                  html.Span(id=f"{P}-tree-msg", className="small text-muted ms-2")], className="d-flex mb-2"),
        html.Div([dbc.Label("Trim: hide paths below probability 10^x (redraws, no recompute)", className="small mb-0"),
                  dcc.Slider(id=f"{P}-trim", min=-8, max=-1, step=0.25, value=-5,
                             marks={i: f"1e{i}" for i in range(-8, 0)})], style={"maxWidth": "36rem"}),
        html.Div([export_bar(f"{P}-tree", "definition-tree"),
                  dbc.Button("Tree JSON", id=f"{P}-tree-json", size="sm", color="secondary", outline=True,
                             className="ms-2")], className="mb-1"),
        dcc.Download(id=f"{P}-tree-download"), dcc.Store(id=f"{P}-tree-store"),
        graph(None, f"{P}-tree", "definition-tree"),
        html.H6("Most probable definitions", className="mt-2"), html.Div(id=f"{P}-definitions"),
    ])


def _steer_tab() -> html.Div:
    return html.Div([
        html.Div([
            html.Div([dbc.Label("Prompt", className="small mb-0"),
                      dbc.Input(id=f"{P}-steer-prompt", value="My favourite thing to talk about is", size="sm")],
                     className="me-3", style={"minWidth": "24rem"}),
            html.Div([dbc.Label("Mode", className="small mb-0"),
                      dbc.RadioItems(id=f"{P}-steer-mode", value="add", inline=True, className="small",
                                     options=[{"label": "add α·W_dec", "value": "add"},
                                              {"label": "clamp at value", "value": "clamp"}])], className="me-3"),
            _num("steer-strength", "α / value", 8.0, width="5.5rem"),
            _num("steer-n", "New tokens", 30, step=1, min=1, max=80, width="5rem"),
            dbc.Button("Generate", id=f"{P}-steer-run", size="sm", color="primary", className="mt-3"),
        ], className="d-flex flex-wrap align-items-start mb-2"),
        html.P("Greedy decoding (deterministic); both rows run in one batch, only the steered row is edited at "
               "the SAE's hook.", className="small text-muted"),
        loading(html.Div(id=f"{P}-steer-box")),
    ])


def _search_tab() -> html.Div:
    return html.Div([
        html.Div([dbc.Input(id=f"{P}-search-token", placeholder="a token, e.g. ' Paris'", size="sm",
                            style={"maxWidth": "18rem"}, className="me-2"),
                  dbc.Button("Search", id=f"{P}-search-run", size="sm", color="primary")], className="d-flex mb-2"),
        html.P("Features whose top-10 corpus activations sit on the token (needs the scan) or whose top-10 "
               "logit effects contain it.", className="small text-muted"),
        loading(html.Div(id=f"{P}-search-box")),
    ])


def layout(**query: str) -> html.Div:
    runtime = get_runtime()
    settings = runtime.settings
    models = [m for m in settings.models if not m.startswith("embedded:all-minilm")]
    model = query.get("model") if query.get("model") in models else (models[0] if models else settings.default_model)
    sample = query.get("sample") or runtime.samples.default_sample_id()
    sae = query.get("sae") or "embedded"
    feature = int_arg(query.get("feature"), 0, 0, None)
    scan_tokens = int_arg(query.get("scan"), DEFAULT_TOKENS, 1000, MAX_TOKENS)
    tab = query.get("tab") if query.get("tab") in ("dash", "tokens", "tree", "steer", "search") else "dash"
    sae_box = html.Div([
        dbc.Label("SAE (embedded, a local dir, or release:sae_id)", html_for=f"{P}-sae", className="small mb-0"),
        dbc.Input(id=f"{P}-sae", value=sae, size="sm", debounce=True, style={"minWidth": "20rem"},
                  list=f"{P}-sae-list"),
        html.Datalist(id=f"{P}-sae-list", children=[
            html.Option(value="embedded"), html.Option(value="gpt2-small-res-jb:blocks.8.hook_resid_pre"),
            html.Option(value="gemma-2b-res-jb:blocks.6.hook_resid_post"),
            html.Option(value="pythia-70m-deduped-res-sm:blocks.3.hook_resid_post")]),
    ])
    feature_box = html.Div([
        dbc.Label("Feature", html_for=f"{P}-feature", className="small mb-0"),
        dcc.Input(id=f"{P}-feature", type="number", value=feature, min=0, step=1, debounce=True,
                  className="form-control form-control-sm", style={"width": "7rem"}),
    ])
    tabs = dbc.Tabs([
        dbc.Tab(_dashboard_tab(scan_tokens), label="Dashboard", tab_id="dash"),
        dbc.Tab(_tokens_tab(), label="Token lists", tab_id="tokens"),
        dbc.Tab(_tree_tab(), label="Definition tree", tab_id="tree"),
        dbc.Tab(_steer_tab(), label="Steering", tab_id="steer"),
        dbc.Tab(_search_tab(), label="Search by token", tab_id="search"),
    ], id=f"{P}-tab", active_tab=tab, className="mb-2")
    return html.Div([
        url_state(P, {"model": model, "sample": sample, "sae": sae, "feature": feature, "tab": tab}),
        html.H4("Features"),
        html.P("What does this SAE feature mean? Activations over the text, top corpus examples, logit effects, "
               "token lists, ghost-token definition trees and steering.", className="text-muted small"),
        picker_row(P, models, model, sample_rows(runtime), sample, labels=model_labels(runtime),
                   extra=[sae_box, feature_box]),
        error_alert(f"{P}-alert"),
        html.Div(id=f"{P}-no-sae"),
        dcc.Store(id=f"{P}-scan-done"),
        html.Div([_vector_controls(), tabs], id=f"{P}-main"),
    ], className="gb-features")
