"""First views of every page on a fresh cache, as a new user sees them (1440 x 900 viewport screenshots).

    python -m tests.e2e.first_view --out docs/screenshots/first-view [--wait 240]

Starts ``python -m app`` on 127.0.0.1 with an empty cache dir (so the embedded model is converted, the
neuron index and the feature scan start by themselves, as on a fresh install), opens each page in headless
Chromium and saves the viewport once the page shows its content (or its job's progress) or after ``--wait``
seconds. Prints, per page, how long the first real content took. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.conftest import ARGS, CHROMIUM

# page -> a JS condition that holds once the page shows real content (or a job's progress)
READY = {
    "": "document.querySelector('#home-status table.gb-models')",
    "tokens": "document.querySelector('#tokens-strips .gb-tok')",
    "lens": "document.querySelector('#lens-grid .gtitle')",
    "regions": "document.querySelector('#regions-heatmap .heatmaplayer .hm')",
    "features": "document.querySelector('#features-logits .gtitle')",
    "neurons": "document.querySelector('#neurons-snippet-list .gb-snippet') || (document.querySelector("
               "'#neurons-build-msg') && document.querySelector('#neurons-build-msg').textContent.includes('%'))",
    "circuits": "document.querySelector('#circuits-summary') && "
                "document.querySelector('#circuits-summary').textContent.includes('(sum ')",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--wait", type=float, default=240.0, help="seconds to wait for a page's content")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="glassbox-fresh-cache-")
    port = _free_port()
    env = {**os.environ, "GLASSBOX_CACHE_DIR": cache, "GLASSBOX_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            tab = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            for _ in range(120):
                try:
                    tab.goto(f"http://127.0.0.1:{port}/", timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    time.sleep(1)
            for page, ready in READY.items():
                start = time.monotonic()
                tab.goto(f"http://127.0.0.1:{port}/{page}")
                try:
                    tab.wait_for_function(f"!!({ready})", timeout=args.wait * 1000)
                    took = f"{time.monotonic() - start:.1f} s"
                except Exception:  # noqa: BLE001 - screenshot what is there
                    took = f"not ready after {args.wait:.0f} s"
                tab.wait_for_timeout(1500)
                name = page or "home"
                tab.screenshot(path=str(out / f"{name}.png"))
                print(f"{name:9s} first content {took}", flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
