"""``python -m app``: start Glassbox (Dash's server locally; waitress in team mode)."""

from __future__ import annotations

import argparse

from analysis.settings import load_settings
from app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Glassbox dashboard.")
    parser.add_argument("--host", default=None, help="bind address (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    app = create_app(settings)
    print(f"Glassbox on http://{settings.host}:{settings.port}  (models: {', '.join(settings.models)})")
    app.run(host=settings.host, port=settings.port, debug=args.debug or settings.debug)


if __name__ == "__main__":
    main()
