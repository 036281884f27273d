"""Team mode protection: HTTP basic auth on every route when a password is configured.

Flask's ``before_request`` covers the Dash pages, their callbacks, assets, ``/healthz`` excepted
(load balancers probe it) and the JSON API. Credentials come from config or ``GLASSBOX_PASSWORD``.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OPEN_PATHS = {"/healthz"}


class UnsafeBindError(RuntimeError):
    """Binding beyond loopback without a password is refused."""


def check_bind(host: str, password: str | None) -> None:
    """Team mode (a non-loopback host) needs a password."""
    if host not in LOOPBACK and not password:
        raise UnsafeBindError(
            f"Refusing to serve on {host} without a password: set GLASSBOX_PASSWORD (or PASSWORD in config.py), "
            "or bind to 127.0.0.1."
        )


def require_basic_auth(server: Flask, username: str, password: str) -> None:
    """Ask every request (except /healthz) for ``username``/``password``."""

    @server.before_request
    def _basic_auth():  # type: ignore[no-untyped-def]
        if request.path in OPEN_PATHS:
            return None
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest(auth.username or "", username)
            and hmac.compare_digest(auth.password or "", password)
        ):
            return None
        return Response("Glassbox: authentication required.\n", 401, {"WWW-Authenticate": 'Basic realm="Glassbox"'})
