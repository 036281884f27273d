"""JSON API under ``/api/v1`` (Flask blueprint on the Dash server), with an OpenAPI document.

Routes are added by ``register_api``; every error is JSON ``{"error": ...}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request

from analysis.errors import GlassboxError, ModelLoadError
from analysis.runtime import Runtime

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Glassbox API", "version": "1"},
    "paths": {},
}


def api_error(message: str, status: int = 400):  # type: ignore[no-untyped-def]
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def _document(path: str, summary: str, params: list[dict[str, Any]] | None = None, tag: str = "Models") -> None:
    """Add a GET route to the OpenAPI document; ``tag`` is the page whose data it serves (the docs group by it)."""
    OPENAPI["paths"][path] = {
        "get": {
            "summary": summary,
            "tags": [tag],
            "parameters": params or [],
            "responses": {"200": {"description": "OK"}, "400": {"description": "Bad parameter (the bound is named)"},
                          "403": {"description": "A path outside the allowed roots"},
                          "404": {"description": "Unknown model, layer or item"}},
        }
    }


def query_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}


def register_api(server: Flask, runtime: Runtime) -> Blueprint:
    api = Blueprint("api_v1", __name__, url_prefix="/api/v1")

    @api.errorhandler(GlassboxError)
    def _glassbox_error(exc: GlassboxError):  # type: ignore[no-untyped-def]
        return api_error(str(exc), 404 if isinstance(exc, ModelLoadError) else exc.status)

    @api.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return api_error(exc.description or exc.name, exc.code or 400)
        import logging

        logging.getLogger("glassbox").error("Unexpected API error", exc_info=exc)
        return api_error(f"Internal error ({type(exc).__name__}): the server is still running; see its log.", 500)

    @api.route("/openapi.json")
    def openapi():  # type: ignore[no-untyped-def]
        return jsonify(OPENAPI)

    @api.route("/models")
    def models():  # type: ignore[no-untyped-def]
        loaded = {info.model_id: info.as_dict() for info in runtime.registry.loaded()}
        return jsonify({"models": [{"id": m, "loaded": m in loaded, "info": loaded.get(m)} for m in runtime.settings.models]})

    @api.route("/model")
    def model():  # type: ignore[no-untyped-def]
        model_id = request.args.get("model", runtime.settings.default_model)
        return jsonify(runtime.model(model_id).info.as_dict())

    _document("/api/v1/models", "Configured models and which are loaded")
    _document("/api/v1/model", "Metadata of one model (layers, heads, widths); loads it", [query_param("model")])

    from app import api_routes

    api_routes.register_all(api, runtime)
    server.register_blueprint(api)
    return api
