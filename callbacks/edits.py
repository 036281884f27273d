"""The shared edit list's glue: the shell's edit bar <-> its session store and the URL, and the one way a
page turns the store into resolved edits for its model (``page_edits``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from dash import Input, Output, State, callback, clientside_callback, ctx, no_update

from analysis.edits import EDITS_FIELD, AnyEdit, parse_edits, resolve_edits
from analysis.runtime import Runtime
from components.edits_bar import edits_status

MAX_SOURCE_CHARS = 4000


def store_text(store: dict | None) -> tuple[str, str]:
    """(edit list, patch source text) held by the store."""
    store = store or {}
    return str(store.get("edits") or "").strip(), str(store.get("src") or "")


def page_edits(runtime: Runtime, model_id: str, store: dict | None) -> list[AnyEdit]:
    """The shared edit list, parsed and resolved for ``model_id`` (corpus means, SAEs, patch values);
    [] when there is none. Bad edits raise with the edit box as their field."""
    text, source = store_text(store)
    if not text:
        return []
    from analysis.features import load_sae

    edits = parse_edits(text, sources=[source] if source.strip() else [])
    return resolve_edits(runtime, model_id, edits, sae=lambda ref: load_sae(runtime, ref, model_id, field=EDITS_FIELD))


@callback(Output("shell-edits-store", "data"), Output("shell-edits", "value"), Output("shell-edits-source", "value"),
          Output("shell-edits-status", "children"), Output("shell-edits-collapse", "is_open"),
          Output("shell-edits", "invalid"), Output("shell-edits-feedback", "children"),
          Input("url", "search"), Input("shell-edits", "value"), Input("shell-edits-source", "value"),
          Input("shell-edits-clear", "n_clicks"), Input("shell-edits-toggle", "n_clicks"),
          State("shell-edits-store", "data"), State("shell-edits-collapse", "is_open"))
def sync_edits(search: str | None, typed: str | None, source: str | None, _clear: int, _toggle: int,
               store: dict | None, is_open: bool) -> tuple:
    """URL (on navigation) or the boxes -> the store; the store -> the boxes and the status line. The text
    form is checked here (no model needed); each page checks its model's bounds."""
    trigger = ctx.triggered_id
    if trigger == "shell-edits-toggle":
        return no_update, no_update, no_update, no_update, not is_open, no_update, no_update
    current_text, current_source = store_text(store)
    if trigger in (None, "url"):
        query = parse_qs((search or "").lstrip("?"))
        if "edits" in query:
            current_text, current_source = query["edits"][0].strip(), (query.get("src") or [""])[0]
    elif trigger == "shell-edits-clear":
        current_text, current_source = "", ""
    else:
        current_text, current_source = (typed or "").strip(), (source or "")[:MAX_SOURCE_CHARS]
    try:
        n_edits = len(parse_edits(current_text, sources=[current_source] if current_source.strip() else []))
    except Exception as exc:  # noqa: BLE001 - shown in place, the last good list stays in the store
        return (no_update, current_text, current_source, "the edit list has an error (see the box)", True, True,
                str(exc))
    data = {"edits": current_text, "src": current_source if current_text and "patch:" in current_text else ""}
    return (data, current_text, data["src"] or current_source, edits_status(current_text, n_edits),
            True if n_edits and trigger in (None, "url") else no_update, False, "")


# The store -> the URL's edits= and src= (the pages' own URL state keeps them: callbacks.common).
clientside_callback(
    """
    function(data) {
        const params = new URLSearchParams(window.location.search);
        const edits = (data && data.edits) || "";
        const src = (data && data.src) || "";
        if (edits) { params.set("edits", edits); } else { params.delete("edits"); }
        if (src) { params.set("src", src); } else { params.delete("src"); }
        const qs = params.toString();
        const url = window.location.pathname + (qs ? "?" + qs : "") + window.location.hash;
        if (url !== window.location.pathname + window.location.search + window.location.hash) {
            window.history.replaceState(window.history.state, "", url);
        }
        return edits;
    }
    """,
    Output("shell-edits-url-sink", "children"),
    Input("shell-edits-store", "data"),
)


def edits_input() -> Input:
    """The Input every edit-aware page callback takes."""
    return Input("shell-edits-store", "data")


