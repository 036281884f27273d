"""Page-specific API routes; each page's module adds a ``register(api, runtime)`` here."""

from __future__ import annotations

import importlib
import logging
from typing import Any

ROUTE_MODULES: list[str] = ["app.api_v1", "app.api_circuits"]  # e.g. "app.api_neurons"


def register_all(api: Any, runtime: Any) -> None:
    for name in ROUTE_MODULES:
        try:
            importlib.import_module(name).register(api, runtime)
        except ImportError:
            logging.getLogger("glassbox").warning("API routes module %s is missing", name)
