"""Neurons benchmark: index-build throughput vs the bare forward pass, and API latency under load.

1. Build throughput: the same batches of the embedded SmolLM2 (all 30 layers, 1,536 neurons each) go
   through (a) the bare base-model forward (no hooks, no LM head), (b) the full causal-LM forward (what a
   user would run anyway), and (c) one index step (hooked forward + streaming top-k/histogram/sample
   updates on the device). Interleaved per batch so machine load hits all three alike.
2. API latency: the app runs under waitress in a subprocess on 127.0.0.1; a second process runs 20
   concurrent clients for a bounded time over the neuron/layer/search/model routes; p50/p99, errors.

``python -m benchmarks.neurons`` (or ``make bench``) writes benchmarks/results/neurons.json.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_TOKENS = int(os.environ.get("GLASSBOX_BENCH_NEURON_TOKENS", "16384"))
CLIENTS = 20
LOAD_SECONDS = float(os.environ.get("GLASSBOX_BENCH_LOAD_SECONDS", "20"))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def build_throughput() -> dict:
    import torch

    from analysis.io import pad_id
    from analysis.neurons.index import build_index, corpus_rows, corpus_texts
    from analysis.neurons.scanner import IndexConfig, Scanner, make_batches, mlp_group
    from analysis.runtime import get_runtime

    runtime = get_runtime()
    model_id = runtime.settings.default_model
    lm = runtime.model(model_id)
    cfg = IndexConfig(model_id=model_id, corpus="training", n_tokens=N_TOKENS, seq_len=64)  # default batch (32)
    rows = corpus_rows(lm, corpus_texts(runtime, cfg.corpus, cfg.n_tokens), cfg.n_tokens, cfg.seq_len)
    batches = make_batches(rows, cfg.batch_size, pad_id(lm.tokenizer))
    groups = [mlp_group(layer, lm.info.d_mlp) for layer in range(lm.info.n_layers)]
    scanner = Scanner(lm, cfg, groups, sum(len(r) for r in rows))
    names = ("bare_base_model", "full_lm_forward", "index_step")
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    per_batch: list[dict[str, float]] = []  # CPU seconds per batch, for the median ratio
    tokens = 0
    _, ids0, mask0 = batches[0]
    with torch.inference_mode():  # warm-up
        lm.model.base_model(input_ids=ids0, attention_mask=mask0, use_cache=False)

    def timed_run(name: str, fn, here: dict[str, float]) -> None:
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall[name] += time.perf_counter() - w
        here[name] = time.process_time() - c
        cpu[name] += here[name]

    for i, (row_ids, ids, mask) in enumerate(batches):
        tokens += int(mask.sum())
        here: dict[str, float] = {}
        steps = [
            ("bare_base_model", lambda ids=ids, mask=mask: lm.model.base_model(input_ids=ids, attention_mask=mask,
                                                                              use_cache=False)),
            ("full_lm_forward", lambda ids=ids, mask=mask: lm.model(input_ids=ids, attention_mask=mask, use_cache=False)),
            ("index_step", lambda r=row_ids, ids=ids, mask=mask: scanner.step(r, ids, mask)),
        ]
        for name, fn in steps if i % 2 == 0 else reversed(steps):  # alternate the order against drift
            with torch.inference_mode():
                timed_run(name, fn, here)
        per_batch.append(here)
    rates = {k: tokens / v for k, v in wall.items()}
    cpu_rates = {k: tokens / v for k, v in cpu.items()}
    median_ratio = statistics.median(b["bare_base_model"] / b["index_step"] for b in per_batch)
    # the whole build as users run it (corpus, scan, SQLite write), into a scratch file
    scratch = runtime.settings.cache_path / "bench" / "neurons-bench.sqlite"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    for p in (scratch, scratch.with_suffix(".state.pt")):
        p.unlink(missing_ok=True)
    t = time.perf_counter()
    build_index(runtime, cfg, path=scratch)
    build_s = time.perf_counter() - t
    size = scratch.stat().st_size
    scratch.unlink(missing_ok=True)
    return {
        "model": model_id, "tokens": tokens, "batches": len(batches), "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len, "layers": len(groups), "units": sum(g.width for g in groups),
        "tokens_per_s_wall": rates, "tokens_per_s_cpu": cpu_rates,
        "ratio_index_vs_bare_base_model_wall": rates["index_step"] / rates["bare_base_model"],
        "ratio_index_vs_bare_base_model_cpu": cpu_rates["index_step"] / cpu_rates["bare_base_model"],
        "ratio_index_vs_bare_base_model_cpu_median_batch": median_ratio,
        "ratio_index_vs_full_lm_forward_cpu": cpu_rates["index_step"] / cpu_rates["full_lm_forward"],
        "load_average_1m": os.getloadavg()[0],
        "full_build_s": build_s, "full_build_tokens_per_s": tokens / build_s, "index_file_bytes": size,
    }


# ---- API load ---------------------------------------------------------------------------------------
SERVER = """
import sys
from waitress import serve
from app import create_app
app = create_app()
serve(app.server, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, timeout: float = 240.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(1.0)
    raise RuntimeError(f"server at {url} did not come up in {timeout:.0f}s")


def load_clients(url: str, model: str, layers: list[int], width: int, seconds: float, clients: int) -> dict:
    """Run ``clients`` concurrent clients for ``seconds`` (this runs in the second process)."""
    from urllib.parse import urlencode

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def one(rng: random.Random) -> str:
        kind = rng.random()
        if kind < 0.6:
            q = {"model": model, "layer": rng.choice(layers), "neuron": rng.randrange(width), "similar": 10}
            return "/api/v1/neuron?" + urlencode(q)
        if kind < 0.8:
            return "/api/v1/layer?" + urlencode({"model": model, "layer": rng.choice(layers), "limit": 50,
                                                 "sort": rng.choice(["max", "range"])})
        if kind < 0.95:
            return "/api/v1/search?" + urlencode({"model": model, "token": rng.choice(["the", "def", "of", "("])})
        return "/api/v1/models"

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.time() < stop:
            path = one(rng)
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url + path, timeout=60) as r:
                    r.read()
                    ok = r.status == 200
            except Exception as exc:  # noqa: BLE001 - counted
                ok = False
                with lock:
                    errors.append(f"{path}: {exc}")
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    latencies.append(dt)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"clients": clients, "seconds": seconds, "requests": len(latencies) + len(errors), "errors": len(errors),
            "error_samples": errors[:5], "p50_ms": 1000 * _percentile(latencies, 0.5),
            "p99_ms": 1000 * _percentile(latencies, 0.99), "mean_ms": 1000 * statistics.fmean(latencies) if latencies else None,
            "throughput_rps": len(latencies) / seconds}


def api_latency() -> dict:
    from analysis.neurons.index import list_indexes
    from analysis.runtime import get_runtime

    runtime = get_runtime()
    model = runtime.settings.default_model
    found = [m for m in list_indexes(runtime, model) if m["status"] == "complete"]
    if not found:
        raise RuntimeError(f"no neuron index for {model}: run `make index` first")
    from analysis.neurons.store import NeuronIndex

    index = NeuronIndex(found[0]["path"])
    layers = [g.layer for g in index.groups if g.kind == "mlp"]
    width = index.groups[0].width
    index.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    # the server's log goes to a file: an undrained PIPE fills up with waitress's queue-depth warnings
    # under load (~64 KB after ~900 requests) and then blocks the server mid-request
    log_path = ROOT / "benchmarks" / "results" / "neurons-api-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_up(url)
        urllib.request.urlopen(f"{url}/api/v1/neuron?model={model}&layer={layers[0]}&neuron=0", timeout=240).read()
        code = (f"import json; from benchmarks.neurons import load_clients; print(json.dumps(load_clients("
                f"{url!r}, {model!r}, {layers!r}, {width}, {LOAD_SECONDS}, {CLIENTS})))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=LOAD_SECONDS + 300, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    result.update(index_tokens=found[0]["tokens"], index_layers=len(layers), server="waitress, 8 threads")
    return result


def main() -> None:
    from benchmarks.common import write_result

    build = build_throughput()
    print(f"index build: {build['tokens']} tokens, {build['layers']} layers x {build['units'] // build['layers']} neurons")
    print(f"{'':28s}{'tokens/s (wall)':>16s}{'tokens/s (CPU time)':>22s}")
    for name, rate in build["tokens_per_s_wall"].items():
        print(f"{name:28s}{rate:16.1f}{build['tokens_per_s_cpu'][name]:22.1f}")
    print(f"index / bare base-model forward: {build['ratio_index_vs_bare_base_model_cpu']:.2f}x by CPU time "
          f"(median per batch {build['ratio_index_vs_bare_base_model_cpu_median_batch']:.2f}x, wall "
          f"{build['ratio_index_vs_bare_base_model_wall']:.2f}x; target >= 0.8x; load avg {build['load_average_1m']:.1f})")
    print(f"index / full LM forward:         {build['ratio_index_vs_full_lm_forward_cpu']:.2f}x by CPU time")
    print(f"full build incl. corpus + SQLite: {build['full_build_tokens_per_s']:.1f} tokens/s "
          f"({build['index_file_bytes'] / 1e6:.1f} MB)")
    api = api_latency()
    print(f"API under load: {api['clients']} clients x {api['seconds']:.0f}s: {api['requests']} requests, "
          f"{api['errors']} errors, p50 {api['p50_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms, "
          f"{api['throughput_rps']:.1f} req/s")
    write_result("neurons", {"build": build, "api": api})


if __name__ == "__main__":
    main()
