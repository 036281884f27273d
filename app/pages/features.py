"""Features (/features): what does this SAE feature mean? Dashboard, your text, token lists, definition tree,
steering and search, for sae-lens SAEs (online or a local folder) or the embedded SmolLM2 SAE (shipped)."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

import callbacks.features  # noqa: F401 - registers the callbacks
from analysis.features import DEFAULT_PROMPT, DEFAULT_TOKENS, MAX_TOKENS, TreeOptions
from analysis.params import url_int
from analysis.runtime import get_runtime
from callbacks.common import model_labels, sample_rows
from components.export import export_bar
from components.feedback import error_alert, loading
from components.figures import graph
from components.forms import field
from components.jobs import job_panel
from components.pickers import picker_row
from components.urlstate import url_state

dash.register_page(__name__, path="/features", name="Features", title="Glassbox · Features")
P = "features"


def _num(id_: str, label: str, value, width="6.5rem", hint: str = "") -> html.Div:
    return html.Div(field(f"{P}-{id_}", label, value, hint=hint, width=width), className="me-3")


def _vector_controls() -> dbc.Card:
    kind = html.Div([dbc.Label("Vector", className="small mb-0"),
                     dbc.RadioItems(id=f"{P}-kind", value="decoder", inline=True, className="small",
                                    options=[{"label": "decoder", "value": "decoder"},
                                             {"label": "encoder", "value": "encoder"}])], className="me-3")
    offset = html.Div([dbc.Label("Centroid offset", className="small mb-0"),
                       dbc.Checkbox(id=f"{P}-offset", value=True, label="g = c + s·direction", className="small")],
                      className="me-3")
    return dbc.Card(dbc.CardBody([
        html.Div("Feature vector → ghost token g in embedding space (token lists and definition tree): "
                 "direction = (1 − w)·v/|v| + w·p1, g = c + s·direction (the original multitool's formula)",
                 className="small fw-bold mb-1"),
        html.Div([kind, offset, _num("scale", "Scaling s (absolute)", "", "8rem", "empty = ρ"),
                  _num("pca", "PCA-1 weight w", 0.0, hint="-10 to 10"), _num("exponent", "Exponent m", 1.4, hint="0-10")],
                 className="d-flex flex-wrap align-items-start"),
        html.Div(id=f"{P}-rho", className="small text-muted"),
    ]), className="mb-2")


def _dashboard_tab(scan_tokens: int) -> html.Div:
    scan = html.Div(job_panel(f"{P}-scan", "Scan corpus", extra=[
        _num("scan-tokens", "Scan tokens", scan_tokens, "8rem", f"1,000-{MAX_TOKENS:,}")]), className="mb-2")
    return html.Div([
        html.Div(id=f"{P}-info"),
        loading(html.Div(id=f"{P}-strip-box", className="mb-2")),
        html.Div(id=f"{P}-badges", className="mb-2"),
        dbc.Row([
            dbc.Col([graph(None, f"{P}-logits", "feature-logit-effects"), export_bar(f"{P}-logits", "feature-logits"),
                     html.Div(id=f"{P}-explanation")], md=5),
            dbc.Col([html.Div(id=f"{P}-density-box"), graph(None, f"{P}-hist", "feature-histogram", height=260),
                     graph(None, f"{P}-density-fig", "feature-density", height=260),
                     dbc.Row([dbc.Col(html.Div(id=f"{P}-correlated"), md=6),
                              dbc.Col(html.Div(id=f"{P}-decoder"), md=6)])], md=7),
        ]),
        scan,
        loading(html.Div(id=f"{P}-examples")),
    ])


def _text_tab() -> html.Div:
    return html.Div([
        html.P("The features most active on the selected text (or your own: pick 'Your own text'), ranked by their "
               "maximum over its tokens; click one for its dashboard.", className="small text-muted"),
        loading(html.Div(id=f"{P}-ranking-box")),
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
    defaults = TreeOptions()
    controls = html.Div([
        html.Div(field(f"{P}-prompt", "Base prompt (<ghost> = the feature vector)", DEFAULT_PROMPT, numeric=False,
                       width="26rem"), className="me-3"),
        _num("topk", "Top-k", defaults.top_k, "4.5rem", "1-10"),
        _num("cutoff", "Cum. prob. cut-off", f"{defaults.cutoff:g}", "7rem", "1e-8 to <1"),
        _num("depth", "Max depth", defaults.max_depth, "4.5rem", "1-40"),
    ], className="d-flex flex-wrap align-items-start mb-2")
    return html.Div([
        controls,
        html.Div(job_panel(f"{P}-tree", "Build tree"), className="mb-2"),
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
            _num("steer-strength", "α / value", 8.0, "5.5rem", "-1000 to 1000"),
            _num("steer-n", "New tokens", 30, "5rem", "1-80"),
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
    feature = url_int(query.get("feature"), 0, 0)
    scan_tokens = url_int(query.get("scan"), DEFAULT_TOKENS, 1000, MAX_TOKENS)
    tab = query.get("tab") if query.get("tab") in ("dash", "text", "tokens", "tree", "steer", "search") else "dash"
    sae_box = html.Div([
        field(f"{P}-sae", "SAE (embedded, a local dir, or release:sae_id)", sae, numeric=False, width="20rem",
              list=f"{P}-sae-list"),
        html.Datalist(id=f"{P}-sae-list", children=[
            html.Option(value="embedded"), html.Option(value="gpt2-small-res-jb:blocks.8.hook_resid_pre"),
            html.Option(value="gemma-2b-res-jb:blocks.6.hook_resid_post"),
            html.Option(value="pythia-70m-deduped-res-sm:blocks.3.hook_resid_post")]),
    ])
    feature_box = field(f"{P}-feature", "Feature", feature, hint="0 to the SAE's width - 1", width="7rem")
    ablate = html.Div(dbc.Button("Ablate on every page", id=f"{P}-ablate", size="sm", color="warning", outline=True,
                                 n_clicks=0, title="adds feature[SAE]:F<n> (set to 0, error term kept) to the shared "
                                                   "edit list above"), className="align-self-end")
    train = dbc.Card(dbc.CardBody([
        html.Div([html.B("Train / retrain the embedded SAE", className="me-2"),
                  html.Span("the shipped one's recipe (`make sae`): activations of 2.4M tokens cached on disk "
                            "(resumable), 6 epochs of sae-lens's BatchTopK trainer, held-out evaluation; about 2 h on "
                            "2 CPU cores. Saved in the cache dir and used as 'embedded' from then on.",
                            className="small text-muted")]),
        html.Div(job_panel(f"{P}-train", "Train SAE"), className="mt-2"),
    ]), className="mt-3")
    tabs = dbc.Tabs([
        dbc.Tab(_dashboard_tab(scan_tokens), label="Dashboard", tab_id="dash"),
        dbc.Tab(_text_tab(), label="Your text", tab_id="text"),
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
        picker_row(P, models, model, sample_rows(runtime), sample, labels=model_labels(),
                   extra=[sae_box, feature_box, ablate]),
        error_alert(P),
        html.Div(id=f"{P}-no-sae"),
        html.Div(id=f"{P}-edit-effect", className="small mb-2"),
        html.Div([_vector_controls(), tabs], id=f"{P}-main"),
        train,
    ], className="gb-features")
