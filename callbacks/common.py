"""Glue shared by every page: the callback scaffold, the one error path, jobs, URL state, pickers.

``page_callback(page, ...)`` is ``dash.callback`` for a page. A callback body reads as parse -> analysis
-> render and just raises on bad input: Dash's own error handling (``on_error``, installed app-wide by
:func:`on_callback_error`) leaves every output as it was (the last good figure stays) and, with
``set_props``, either marks the offending field invalid with the message beside it (errors that carry a
``field``) or fills the page's one alert. The callback's next success closes the alert it opened and
clears the marks of the fields it parsed.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any

from dash import MATCH, Input, Output, State, callback, callback_context, clientside_callback, no_update, set_props

from analysis.errors import GlassboxError
from analysis.jobs import Job
from analysis.params import parsed_fields, track_fields
from analysis.runtime import Runtime, get_runtime
from components.pickers import USER_SAMPLE

log = logging.getLogger("glassbox")
PAGES = ("home", "tokens", "lens", "regions", "features", "neurons", "circuits")
_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("glassbox_callback", default=None)

# One clientside callback for every page: mirror the page's state store into the URL query.
clientside_callback(
    """
    function(state) {
        if (!state) { return window.dash_clientside.no_update; }
        const params = new URLSearchParams();
        const shared = new URLSearchParams(window.location.search);  // the shell's shared keys stay
        ["edits", "src"].forEach(function (k) { if (shared.get(k)) { params.set(k, shared.get(k)); } });
        Object.keys(state).forEach(function (k) {
            const v = state[k];
            if (v !== null && v !== undefined && v !== "") { params.set(k, String(v)); }
        });
        const qs = params.toString();
        const url = window.location.pathname + (qs ? "?" + qs : "") + window.location.hash;
        if (url !== window.location.pathname + window.location.search + window.location.hash) {
            window.history.replaceState(window.history.state, "", url);
        }
        return qs;
    }
    """,
    Output({"type": "url-state-sink", "page": MATCH}, "children"),
    Input({"type": "url-state", "page": MATCH}, "data"),
)


def friendly(exc: BaseException) -> str:
    """The message a user sees: ours as is, anything else named and logged with its traceback."""
    if isinstance(exc, GlassboxError):
        return str(exc)
    log.error("Unexpected error in a callback", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}: {str(exc)[:200]}). The server is still running; try again."


def _page_of_outputs() -> str | None:
    """The page an error belongs to, read off the failing callback's first output id."""
    try:
        outputs = callback_context.outputs_list
    except Exception:  # noqa: BLE001 - outside a callback
        return None
    first = outputs[0] if isinstance(outputs, list) and outputs else outputs
    if isinstance(first, list):
        first = first[0] if first else None
    cid = (first or {}).get("id") if isinstance(first, dict) else None
    if isinstance(cid, dict):
        cid = cid.get("page") or str(cid.get("type", ""))
    prefix = str(cid or "").split("-", 1)[0]
    return prefix if prefix in PAGES else None


def mark_field(exc: GlassboxError) -> None:
    """Mark ``exc``'s field invalid with its message while the callback still succeeds (a partial failure,
    e.g. a bad tuned lens while the logit lens draws)."""
    field = getattr(exc, "field", None)
    if field:
        set_props(field, {"invalid": True})
        set_props(f"{field}-feedback", {"children": friendly(exc)})


def on_callback_error(exc: Exception) -> None:
    """The app's ``on_error``: outputs stay as they were; the field or the page's alert shows the message."""
    message = friendly(exc)
    current = _current.get()
    page = current[0] if current else _page_of_outputs()
    for ok in getattr(exc, "parsed_fields", None) or parsed_fields():
        set_props(ok, {"invalid": False})
    field = getattr(exc, "field", None)
    if field:
        set_props(field, {"invalid": True})
        set_props(f"{field}-feedback", {"children": message})
    elif page:
        set_props(f"{page}-error", {"children": message, "is_open": True})
        set_props(f"{page}-error-owner", {"data": current[1] if current else None})
    return None


def page_callback(page: str, *dependencies: Any, **kwargs: Any) -> Callable:
    """``dash.callback`` for one page's callback (see the module docstring for the error path)."""
    owner = State(f"{page}-error-owner", "data")

    def decorator(func: Callable) -> Callable:
        name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args: Any) -> Any:
            *values, opened_by = args
            _current.set((page, name))
            with track_fields() as fields:
                try:
                    result = func(*values)
                except Exception as exc:
                    # the fields parsed before the failure are fine: on_error clears their marks
                    exc.parsed_fields = [f for f in fields if f != getattr(exc, "field", None)]
                    raise
            for ok in fields:
                set_props(ok, {"invalid": False})
            if opened_by == name:
                set_props(f"{page}-error", {"is_open": False})
                set_props(f"{page}-error-owner", {"data": None})
            _current.set(None)
            return result

        callback(*dependencies, owner, **kwargs)(wrapper)
        return func  # the module keeps the plain function: tests and the figure CLI call it directly

    return decorator


# ---- background jobs --------------------------------------------------------------------------

JobFactory = Callable[..., tuple[str, str, Callable[[Job], Any]] | None]


def register_job(page: str, prefix: str, states: list[State], make: JobFactory,
                 describe: Callable[[Any], str] | None = None, triggers: list[Input] | None = None) -> None:
    """Wire a :func:`components.jobs.job_panel` to the runtime's job registry.

    ``make(*state_values)`` returns ``(key, title, work)`` (it parses the inputs; a bad one raises and is
    shown in place). The start button starts (or joins) the job; the interval polls its progress while it
    runs; cancel asks it to stop; ``{prefix}-done`` receives ``{"key", "state", "finished"}`` when it ends,
    for the page to refresh what the job produced. ``describe(result)`` words a finished job's result.
    ``triggers`` are more inputs that start the job (e.g. a new dataset); ``make`` then sees their values
    after the states' and may return None to start nothing.
    """
    extra = list(triggers or [])

    @page_callback(page, Output(f"{prefix}-key", "data"), Output(f"{prefix}-poll", "disabled"),
                   Input(f"{prefix}-start", "n_clicks"), *extra, *states, prevent_initial_call=True)
    def _start(_clicks: int, *values: Any) -> tuple:
        trigger_values, state_values = values[: len(extra)], values[len(extra):]
        made = make(*state_values, *trigger_values)
        if made is None:
            return no_update, no_update
        key, title, work = made
        get_runtime().jobs.start(key, title, work)
        return key, False

    # ``-done`` is set with set_props, not declared as an output: a page callback that listens to it would
    # otherwise wait behind every in-flight poll (Dash holds a callback while one that outputs its input
    # runs), and on a busy server the 1 s poll is nearly always in flight.
    @page_callback(page, Output(f"{prefix}-progress", "value"), Output(f"{prefix}-progress", "label"),
                   Output(f"{prefix}-progress", "animated"), Output(f"{prefix}-msg", "children"),
                   Output(f"{prefix}-poll", "disabled", allow_duplicate=True),
                   Output(f"{prefix}-start", "disabled"), Output(f"{prefix}-cancel", "disabled"),
                   Input(f"{prefix}-poll", "n_intervals"), Input(f"{prefix}-key", "data"),
                   State(f"{prefix}-done", "data"), prevent_initial_call=True)
    def _poll(_ticks: int, key: str | None, done: dict | None) -> tuple:
        status = get_runtime().jobs.status(key) if key else None
        if status is None:
            return 0, "", False, no_update, True, False, True
        progress = status.progress
        value = round(100 * progress.fraction) if progress.fraction is not None else (100 if status.running else 0)
        if status.running:
            return value, progress.label(), True, f"{status.title}: {progress.label()}", False, True, False
        if status.state == "done":
            message = describe(status.result) if describe else f"{status.title}: done."
        elif status.state == "cancelled":
            message = f"{status.title}: stopped ({status.error or 'cancelled'}). Start again to resume or retry."
        else:
            message = f"{status.title} failed: {status.error}. Fix the cause and start again to retry."
        finished = {"key": key, "state": status.state, "finished": status.finished}
        if finished != done:
            set_props(f"{prefix}-done", {"data": finished})
        return (100 if status.state == "done" else value), status.state, False, message, True, False, True

    @page_callback(page, Output(f"{prefix}-msg", "children", allow_duplicate=True),
                   Input(f"{prefix}-cancel", "n_clicks"), State(f"{prefix}-key", "data"), prevent_initial_call=True)
    def _cancel(_clicks: int, key: str | None) -> Any:
        if key and get_runtime().jobs.cancel(key):
            return "Stopping after the current step…"
        return no_update


# ---- pickers and texts ---------------------------------------------------------------------------

def register_picker_callbacks(page: str) -> None:
    """Show the text area when "your own text" is picked on ``page``."""

    @callback(Output(f"{page}-text-collapse", "is_open"), Input(f"{page}-sample", "value"))
    def _toggle_text(sample: Any) -> bool:
        if isinstance(sample, list):
            return USER_SAMPLE in sample
        return sample == USER_SAMPLE


def resolve_text(runtime: Runtime, sample_id: str | None, user_text: str | None, field: str | None = None) -> str:
    """The text of a picked sample, or the user's own text; errors are clear GlassboxErrors."""
    from analysis.corpus import SampleNotFound
    from analysis.errors import InputError

    if sample_id == USER_SAMPLE or not sample_id:
        return runtime.check_text(user_text, field=field)
    try:
        return runtime.samples.get(sample_id).text
    except SampleNotFound as exc:
        raise InputError(f"Unknown sample '{sample_id}': pick one from the list.") from exc


def sample_rows(runtime: Runtime) -> list[tuple[str, str, str]]:
    """(sample_id, source, title) for the sample picker."""
    return [(s.sample_id, s.source, s.title) for group in runtime.samples.sources().values() for s in group]


def model_labels() -> dict[str, str]:
    from analysis.embedded import EMBEDDED_LABELS

    return dict(EMBEDDED_LABELS)
