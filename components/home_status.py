"""Home page pieces: the page cards and the status table of models, device and memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
from dash import html

PAGES = [
    ("Tokens", "/tokens", "Read a sample token by token: predictions, loss, attention, similarities, activations."),
    ("Lens", "/lens", "Logit lens and tuned lens grids: at which layer does the prediction form?"),
    ("Regions", "/regions", "Activation regions per layer and category, and the graph that links them (NRAG)."),
    ("Features", "/features", "SAE features: activations, top examples, logit effects, token lists, definition trees."),
    ("Neurons", "/neurons", "A neuron database: top snippets, similar neurons, token search, JSON API."),
    ("Circuits", "/circuits", "Which heads, MLPs and earlier tokens made a prediction: logit attribution, "
     "contribution graph, activation patching."),
]


def page_cards() -> dbc.Row:
    cards = [
        dbc.Col(
            dbc.Card(
                dbc.CardBody([html.H5(html.A(name, href=href), className="card-title"), html.P(text, className="small mb-0")]),
                className="h-100 gb-card",
            ),
            md=4, lg=True, className="mb-3",
        )
        for name, href, text in PAGES
    ]
    return dbc.Row(cards, className="g-3")


def _mb(nbytes: int | float) -> str:
    return f"{nbytes / 1024**2:,.0f} MB"


def status_table(status: dict[str, Any]) -> html.Div:
    """Device, process memory, caches and one row per configured model (loaded or not)."""
    facts = [
        ("Device", status["device"]),
        ("Process memory (RSS)", _mb(status["rss_bytes"])),
    ]
    if status.get("accelerator_bytes") is not None:
        facts.append(("Accelerator memory", _mb(status["accelerator_bytes"])))
    fact_rows = [html.Tr([html.Th(k, className="fw-normal text-muted"), html.Td(v)]) for k, v in facts]
    header = html.Tr([html.Th(h) for h in ("Model", "State", "Arch", "Layers", "Heads", "d_model", "d_mlp", "Params", "dtype", "")])
    rows = []
    for m in status["models"]:
        info = m.get("info") or {}
        state = dbc.Badge("loaded", color="success") if m["loaded"] else dbc.Badge("not loaded", color="light", text_color="dark")
        button = "" if m["loaded"] else dbc.Button("Load", id={"type": "home-load", "model": m["id"]}, size="sm", color="primary", outline=True)
        rows.append(html.Tr([
            html.Td(m.get("label", m["id"])), html.Td(state), html.Td(info.get("arch", "")),
            html.Td(info.get("n_layers", "")), html.Td(info.get("n_heads", "")), html.Td(info.get("d_model", "")),
            html.Td(info.get("d_mlp", "")), html.Td(f"{info['n_params'] / 1e6:,.0f}M" if info else ""),
            html.Td(info.get("dtype", "")), html.Td(button),
        ]))
    caches = status.get("caches") or []
    cache_rows = [html.Tr([html.Td(c["name"]), html.Td(f"{c['entries']:,}"), html.Td(_mb(c["bytes"])),
                           html.Td(f"{c['hits']:,} / {c['misses']:,}")]) for c in caches]
    cache_table = dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("In-memory cache", "entries", "memory",
                                                                       "hits / misses")])),
                             html.Tbody(cache_rows)], size="sm", className="w-auto small gb-caches", id="home-caches")
    jobs = status.get("jobs") or []
    job_rows = [html.Tr([html.Td(j["title"]), html.Td(j["state"]), html.Td(j["progress"]["label"])]) for j in jobs]
    job_table = (dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("Job", "state", "progress")])),
                            html.Tbody(job_rows)], size="sm", className="small gb-jobs", id="home-jobs")
                 if jobs else html.Div("No jobs since the server started.", className="small text-muted"))
    return html.Div([
        dbc.Table([html.Tbody(fact_rows)], size="sm", borderless=True, className="w-auto mb-2"),
        dbc.Table([html.Thead(header), html.Tbody(rows)], size="sm", hover=True, responsive=True, className="gb-models"),
        dbc.Row([dbc.Col(cache_table, lg=6), dbc.Col(job_table, lg=6)]),
    ])


def model_rows(configured: Sequence[str], loaded: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [{"id": m, "label": labels.get(m, m), "loaded": m in loaded, "info": loaded.get(m)} for m in configured]
