"""``python -m app.serve`` / ``make serve``: team mode on a production WSGI server (waitress).

Binds to HOST/PORT from config (``--host 0.0.0.0`` for a team); any non-loopback host needs a
password (basic auth). Model work is serialised per model by the registry's locks, so many users
share one copy of each model; waitress's thread pool serves pages and the API concurrently.
"""

from __future__ import annotations

import argparse

from analysis.settings import load_settings
from app import create_app
from app.auth import UnsafeBindError, check_bind


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve Glassbox for a team (waitress, basic auth).")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings()
    settings.host = args.host or settings.host
    settings.port = args.port or settings.port
    try:
        check_bind(settings.host, settings.password)
    except UnsafeBindError as exc:
        raise SystemExit(f"glassbox: {exc}") from None
    app = create_app(settings)
    from waitress import serve

    auth = "basic auth on" if settings.password else "no password (loopback only)"
    print(f"Glassbox team server on http://{settings.host}:{settings.port} ({auth}, {args.threads} threads)")
    serve(app.server, host=settings.host, port=settings.port, threads=args.threads)


if __name__ == "__main__":
    main()
