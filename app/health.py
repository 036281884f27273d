"""``GET /healthz``: status, version, device, loaded models (for load balancers and the Home page)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from analysis.runtime import Runtime


def health_payload(runtime: Runtime, version: str) -> dict[str, Any]:
    status = runtime.status()
    return {
        "status": "ok",
        "version": version,
        "device": status["device"],
        "loaded_models": [info["model_id"] for info in status["loaded"]],
        "configured_models": list(runtime.settings.models),
        "rss_bytes": status["rss_bytes"],
        "accelerator_bytes": status["accelerator_bytes"],
        "run_cache_bytes": status["run_cache_bytes"],
        "caches": status["caches"],
        "jobs": [{"key": s["key"], "state": s["state"]} for s in status["jobs"]],
    }


def register_health(server: Flask, runtime: Runtime, version: str) -> None:
    @server.route("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(health_payload(runtime, version))
