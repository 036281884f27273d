"""Glassbox Dash app factory: shell layout, pages, health check and JSON API on one Flask server."""

from __future__ import annotations

import logging
from pathlib import Path

import dash
import dash_bootstrap_components as dbc
import diskcache
from dash import DiskcacheManager

from analysis.runtime import Runtime, get_runtime, set_runtime
from analysis.settings import Settings, load_settings

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> dash.Dash:
    """Build the Dash app (one per process) around a shared :class:`Runtime`."""
    import callbacks.export  # noqa: F401 - figure export for every page
    from app.api import register_api
    from app.health import register_health
    from app.shell import shell_layout

    if runtime is None:
        runtime = set_runtime(Runtime(settings or load_settings()))
    else:
        set_runtime(runtime)
    settings = runtime.settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    jobs = diskcache.Cache(str(settings.cache_path / "jobs"))
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(ROOT / "app" / "pages"),
        assets_folder=str(ROOT / "assets"),
        title="Glassbox",
        update_title=None,
        suppress_callback_exceptions=True,
        background_callback_manager=DiskcacheManager(jobs),
        external_stylesheets=[],
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.layout = shell_layout
    if settings.password:
        from app.auth import require_basic_auth

        require_basic_auth(app.server, settings.username, settings.password)
    register_health(app.server, runtime, __version__)
    register_api(app.server, runtime)
    return app


def current_runtime() -> Runtime:
    return get_runtime()


__all__ = ["create_app", "current_runtime", "dbc", "__version__"]
