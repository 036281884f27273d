"""Team mode: basic auth on every route, refusal to bind beyond loopback without a password."""

from __future__ import annotations

import base64

import pytest
from flask import Flask

from app.auth import UnsafeBindError, check_bind, require_basic_auth


def _server() -> Flask:
    server = Flask("t")
    server.add_url_rule("/healthz", "h", lambda: "ok")
    server.add_url_rule("/tokens", "t", lambda: "page")
    server.add_url_rule("/api/v1/models", "m", lambda: "{}")
    require_basic_auth(server, "glassbox", "s3cret")
    return server


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_every_route_needs_the_password_except_health():
    client = _server().test_client()
    assert client.get("/healthz").status_code == 200
    for path in ("/tokens", "/api/v1/models"):
        denied = client.get(path)
        assert denied.status_code == 401 and "Basic" in denied.headers["WWW-Authenticate"]
        assert client.get(path, headers=_auth("glassbox", "wrong")).status_code == 401
        assert client.get(path, headers=_auth("glassbox", "s3cret")).status_code == 200


def test_team_host_requires_password():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "pw")
    with pytest.raises(UnsafeBindError, match="GLASSBOX_PASSWORD"):
        check_bind("0.0.0.0", None)
