"""Load test: 20 concurrent simulated sessions on the Tokens and Lens pages and the JSON API.

Starts ``python -m app.serve`` (waitress) on 127.0.0.1 at a free port in a subprocess, then runs
``SESSIONS`` threads (loopback only, bounded: each request has a timeout, the whole run a deadline) that
do what a browser does: GET the page, ``/_dash-layout`` and ``/_dash-dependencies``, and POST the pages'
real callbacks to ``/_dash-update-component`` (payloads built from the server's own dependency list:
open a text, paint attention, change layer, select a token, the predictions panel; Lens grid, change
statistic), then ``/api/v1/run`` and ``/api/v1/lens``. Reports p50/p99 latency per route, errors
(HTTP errors and page error alerts), model loads (``/healthz`` and the server log) and the server's
peak RSS against ``model_memory_bytes``. ``python -m benchmarks.load [--sessions 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
MODEL = "embedded:smollm2-135m-instruct"
SESSIONS = 20
DEADLINE_S = 20 * 60  # the whole run stops by itself
REQUEST_TIMEOUT_S = 600
# Realistic short texts (users paste sentences or pick samples); several sessions share each text, as a
# team does, so the run cache and the one model copy are shared.
TEXTS = [
    "The quick brown fox jumps over the lazy dog, and the dog does not seem to mind at all.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "Paris is the capital of France; Berlin is the capital of Germany; Rome is the capital of",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stats:
    """Latencies per route and errors, shared by the session threads."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, seconds: float, error: str | None = None) -> None:
        with self.lock:
            self.times[route].append(seconds)
            if error:
                self.errors.append(f"{route}: {error}")


class Client:
    """A browser-like session: plain urllib on loopback."""

    def __init__(self, base: str, stats: Stats, deadline: float) -> None:
        self.base, self.stats, self.deadline = base, stats, deadline

    def request(self, route: str, path: str, body: dict | None = None) -> Any:
        if time.monotonic() > self.deadline:
            raise TimeoutError("load-test deadline reached")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        start = time.perf_counter()
        error, payload = None, None
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                raw = resp.read()
                if resp.headers.get_content_type() == "application/json" and raw:
                    payload = json.loads(raw)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            error = f"{type(exc).__name__}: {exc}"
        self.stats.add(route, time.perf_counter() - start, error)
        return payload


def _outputs(spec: str) -> list[dict[str, Any]]:
    """Dash's output string ("..a.b...c.d.." or "a.b") -> [{"id", "property"}]."""
    parts = spec[2:-2].split("...") if spec.startswith("..") else [spec]
    out = []
    for part in parts:
        cid, prop = part.rsplit(".", 1)
        out.append({"id": json.loads(cid) if cid.startswith("{") else cid, "property": prop})
    return out


def find_callback(deps: list[dict], output_id: str, output_prop: str) -> dict:
    for dep in deps:
        if any(o["id"] == output_id and o["property"] == output_prop for o in _outputs(dep["output"])):
            return dep
    raise KeyError(f"no callback outputs {output_id}.{output_prop}")


def payload(dep: dict, values: dict[tuple[str, str], Any], changed: list[str]) -> dict[str, Any]:
    """The JSON body Dash's renderer POSTs for ``dep`` with the given input/state values."""
    def fill(items: list[dict]) -> list[dict]:
        return [{"id": i["id"], "property": i["property"], "value": values.get((i["id"], i["property"]))}
                for i in items]

    outs = _outputs(dep["output"])
    return {"output": dep["output"], "outputs": outs if dep["output"].startswith("..") else outs[0],
            "inputs": fill(dep["inputs"]), "state": fill(dep.get("state", [])), "changedPropIds": changed}


def _alert(resp: Any, alert_id: str) -> str | None:
    """The page's error message when the callback opened its alert (counted as an error)."""
    if not resp:
        return None
    alert = resp.get("response", {}).get(alert_id, {})
    return str(alert.get("children")) if alert.get("is_open") else None


def tokens_session(c: Client, deps: list[dict], text: str, i: int) -> None:
    c.request("GET /tokens", f"/tokens?{urlencode({'model': MODEL, 'sample': 'user'})}")
    c.request("GET /_dash-layout", "/_dash-layout")
    load, paint, panel = (find_callback(deps, "tokens-strips", "children"), find_callback(deps, "tokens-paint", "data"),
                          find_callback(deps, "tokens-panel", "children"))
    v: dict[tuple[str, str], Any] = {("tokens-model", "value"): MODEL, ("tokens-sample", "value"): ["user"],
                                     ("tokens-text", "value"): text}
    resp = c.request("POST tokens:load_samples", "/_dash-update-component",
                     payload(load, v, ["tokens-text.value"]))
    if msg := _alert(resp, "tokens-error"):
        c.stats.add("POST tokens:load_samples", 0.0, f"page error: {msg}")
        return
    v[("tokens-meta", "data")] = resp["response"]["tokens-meta"]["data"]
    v.update({("tokens-selected", "data"): {"s": 0, "i": 3}, ("tokens-tool", "value"): "attention",
              ("tokens-site", "value"): "hook_resid_post", ("tokens-layer", "value"): 0, ("tokens-head", "value"): 0,
              ("tokens-mean", "value"): False, ("tokens-direction", "value"): "from", ("tokens-rope", "value"): "full",
              ("tokens-sim", "value"): "tokens", ("tokens-dim", "value"): 0, ("tokens-norm", "value"): "none",
              ("tokens-tabs", "active_tab"): "token", ("tokens-highlight", "value"): ""})
    for step, change in enumerate([("tokens-tool.value", {}), ("tokens-layer.value", {("tokens-layer", "value"): 3 + i % 20}),
                                   ("tokens-selected.data", {("tokens-selected", "data"): {"s": 0, "i": 7}}),
                                   ("tokens-head.value", {("tokens-head", "value"): 1 + i % 8})]):
        v.update(change[1])
        resp = c.request("POST tokens:paint", "/_dash-update-component", payload(paint, v, [change[0]]))
        if msg := _alert(resp, "tokens-view-error"):
            c.stats.add("POST tokens:paint", 0.0, f"page error (step {step}): {msg}")
    resp = c.request("POST tokens:panel", "/_dash-update-component", payload(panel, v, ["tokens-selected.data"]))
    if resp and "Something went wrong" in json.dumps(resp):
        c.stats.add("POST tokens:panel", 0.0, "panel shows an error")


def lens_session(c: Client, deps: list[dict], text: str, i: int) -> None:
    c.request("GET /lens", f"/lens?{urlencode({'model': MODEL, 'sample': 'user'})}")
    c.request("GET /_dash-layout", "/_dash-layout")
    update = find_callback(deps, "lens-grid", "figure")
    v = {("lens-model", "value"): MODEL, ("lens-sample", "value"): "user", ("lens-text", "value"): text,
         ("lens-stat", "value"): "kl_final", ("lens-view", "value"): "logit", ("lens-residual", "value"): "resid",
         ("lens-div", "value"): "js", ("lens-start", "value"): 0, ("lens-width", "value"): 32,
         ("lens-source", "value"): "", ("lens-trained", "data"): None}
    for stat in ("kl_final", ("entropy", "rank")[i % 2]):
        v[("lens-stat", "value")] = stat
        resp = c.request("POST lens:update", "/_dash-update-component", payload(update, v, ["lens-stat.value"]))
        if msg := _alert(resp, "lens-error"):
            c.stats.add("POST lens:update", 0.0, f"page error: {msg}")


def api_session(c: Client, text: str) -> None:
    q = urlencode({"model": MODEL, "text": text})
    resp = c.request("GET /api/v1/run", f"/api/v1/run?{q}")
    if resp is not None and len(resp.get("tokens", [])) < 5:
        c.stats.add("GET /api/v1/run", 0.0, "too few tokens in the answer")
    c.request("GET /api/v1/lens", f"/api/v1/lens?{q}&width=32&statistic=entropy")
    c.request("GET /api/v1/models", "/api/v1/models")


def session(base: str, stats: Stats, deadline: float, i: int) -> None:
    c = Client(base, stats, deadline)
    text = TEXTS[i % len(TEXTS)]
    try:
        c.request("GET /", "/")
        deps = c.request("GET /_dash-dependencies", "/_dash-dependencies")
        if not deps:
            return
        order = [lambda: tokens_session(c, deps, text, i), lambda: lens_session(c, deps, text, i),
                 lambda: api_session(c, text)]
        for k in range(3):  # sessions start on different pages
            order[(i + k) % 3]()
    except TimeoutError as exc:
        stats.add("session", 0.0, str(exc))
    except Exception as exc:  # noqa: BLE001
        stats.add("session", 0.0, f"{type(exc).__name__}: {exc}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class RssMonitor(threading.Thread):
    """Peak resident memory of the server process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
            time.sleep(0.2)


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GLASSBOX_MODELS=MODEL,
               GLASSBOX_DEFAULT_MODEL=MODEL)
    env.pop("GLASSBOX_PASSWORD", None)
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", "8"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
                return json.loads(resp.read())
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    raise RuntimeError("server did not become healthy")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    args = parser.parse_args(argv if argv is not None else [])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path("/tmp") / f"glassbox-load-{port}.log"
    proc = start_server(port, log_path)
    try:
        before = wait_healthy(base, proc)
        monitor = RssMonitor(proc.pid)
        monitor.start()
        stats = Stats()
        deadline = time.monotonic() + DEADLINE_S
        started = time.perf_counter()
        threads = [threading.Thread(target=session, args=(base, stats, deadline, i), daemon=True)
                   for i in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic() + REQUEST_TIMEOUT_S))
        wall = time.perf_counter() - started
        after = wait_healthy(base, proc)
        monitor.stop.set()
        monitor.join()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    log = log_path.read_text(errors="replace")
    loads_in_log = len(re.findall(r"Loading weights: 100%", log))
    from analysis.settings import load_settings

    budget = load_settings().model_memory_bytes
    routes = {route: {"n": len(ts), "p50_s": round(percentile(ts, 0.5), 3), "p99_s": round(percentile(ts, 0.99), 3),
                      "max_s": round(max(ts), 3)} for route, ts in sorted(stats.times.items()) if route != "session"}
    result = {
        "sessions": args.sessions, "wall_s": round(wall, 1), "requests": sum(r["n"] for r in routes.values()),
        "errors": len(stats.errors), "error_samples": stats.errors[:10], "routes": routes,
        "loaded_models_before": before["loaded_models"], "loaded_models_after": after["loaded_models"],
        "model_loads_in_server_log": loads_in_log, "server_peak_rss_bytes": monitor.peak,
        "model_memory_bytes": budget, "rss_within_budget": monitor.peak <= budget,
        "server_log": str(log_path),
    }
    print(f"{args.sessions} sessions, {result['requests']} requests in {wall:.0f} s; errors {len(stats.errors)}")
    print(f"{'route':32s} {'n':>4s} {'p50 s':>8s} {'p99 s':>8s}")
    for route, r in routes.items():
        print(f"{route:32s} {r['n']:4d} {r['p50_s']:8.3f} {r['p99_s']:8.3f}")
    print(f"model loads: {loads_in_log} (server log); loaded after: {after['loaded_models']}")
    print(f"server peak RSS {monitor.peak / 2**30:.2f} GiB vs model_memory_bytes {budget / 2**30:.1f} GiB "
          f"(ratio {monitor.peak / budget:.2f})")
    for err in stats.errors[:10]:
        print("  error:", err)
    write_result("load", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
