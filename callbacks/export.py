"""Figure export for every page (see components/export.py)."""

from __future__ import annotations

from dash import ALL, MATCH, Input, Output, State, callback, clientside_callback, dcc, no_update

from components.figures import figure_bytes

clientside_callback(
    """
    function(clicks, ids, req) {
        const trig = window.dash_clientside.callback_context.triggered;
        if (!trig || !trig.length || !trig[0].value) { return window.dash_clientside.no_update; }
        const which = JSON.parse(trig[0].prop_id.split(".")[0]);
        const host = document.getElementById(which.target);
        const plot = host && (host.classList.contains("js-plotly-plot") ? host : host.querySelector(".js-plotly-plot"));
        if (!plot) { return window.dash_clientside.no_update; }
        const layout = Object.assign({}, plot.layout);
        return {filename: req.filename, fmt: which.fmt, nonce: Date.now(),
                figure: {data: plot.data, layout: layout},
                width: plot.clientWidth, height: plot.clientHeight};
    }
    """,
    Output({"type": "gb-export-req", "target": MATCH}, "data"),
    Input({"type": "gb-export", "target": MATCH, "fmt": ALL}, "n_clicks"),
    State({"type": "gb-export", "target": MATCH, "fmt": ALL}, "id"),
    State({"type": "gb-export-req", "target": MATCH}, "data"),
    prevent_initial_call=True,
)


@callback(
    Output({"type": "gb-export-dl", "target": MATCH}, "data"),
    Input({"type": "gb-export-req", "target": MATCH}, "data"),
    prevent_initial_call=True,
)
def export_figure(request: dict | None):  # type: ignore[no-untyped-def]
    """Render the requested figure with the paper theme and send it as a download."""
    if not request or "figure" not in request:
        return no_update
    fmt = request.get("fmt", "svg")
    scale = 3 if fmt == "png" else 1
    data = figure_bytes(request["figure"], fmt, scale=scale, width=request.get("width"), height=request.get("height"))
    return dcc.send_bytes(data, f"{request.get('filename', 'figure')}.{fmt}")
