"""Glassbox Dash app factory: shell layout, pages, health check and JSON API on one Flask server."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dash
import dash_bootstrap_components as dbc

from analysis.runtime import Runtime, get_runtime, set_runtime
from analysis.settings import Settings, load_settings

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent


def single_threaded_blas() -> None:
    """numpy/scipy BLAS on one thread in the server process (model forwards keep torch's threads).

    OpenBLAS called from many request threads at once busy-waits its own thread pool: 20 API clients
    got 5.8 requests/s with it and 37 with one BLAS thread (benchmarks/neurons.py, full index). The
    request-sized BLAS calls here (similarity mat-vecs, small PCAs) gain little from a second thread.
    """
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # BLAS libraries loaded later (scipy's own)
    threadpool_limits(limits=1, user_api="blas")  # the ones already loaded (numpy's)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> dash.Dash:
    """Build the Dash app (one per process) around a shared :class:`Runtime`."""
    single_threaded_blas()
    import callbacks.edits  # noqa: F401 - the shared edit list
    import callbacks.export  # noqa: F401 - figure export for every page
    import callbacks.shell  # noqa: F401 - the model-loading bar
    from app.api import register_api
    from app.health import register_health
    from app.shell import shell_layout
    from callbacks.common import on_callback_error

    if runtime is None:
        runtime = set_runtime(Runtime(settings or load_settings()))
    else:
        set_runtime(runtime)
    settings = runtime.settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(ROOT / "app" / "pages"),
        assets_folder=str(ROOT / "assets"),
        title="Glassbox",
        update_title=None,
        suppress_callback_exceptions=True,
        on_error=on_callback_error,
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
