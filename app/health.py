"""``GET /healthz``: status, version, device, loaded models (for load balancers and the Home page)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from analysis.models import resolve_device
from analysis.runtime import Runtime


def health_payload(runtime: Runtime, version: str) -> dict[str, Any]:
    import psutil

    return {
        "status": "ok",
        "version": version,
        "device": str(resolve_device(runtime.settings.device)),
        "loaded_models": [info.model_id for info in runtime.registry.loaded()],
        "configured_models": list(runtime.settings.models),
        "rss_bytes": psutil.Process().memory_info().rss,
        "run_cache_bytes": runtime.runs.total_bytes(),
        "caches": runtime.cache_stats(),
        "jobs": [{"key": s.key, "state": s.state} for s in runtime.jobs.statuses()],
    }


def register_health(server: Flask, runtime: Runtime, version: str) -> None:
    @server.route("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(health_payload(runtime, version))
