"""Regions vs LLM-MRI 0.2.1, end to end, on the same 1,000 labeled texts (500 pydoc prose, 500 stdlib
code chunks of 200-600 characters), all-MiniLM-L6-v2, first-token pooling, PCA 2-D, grid 10; one run each, in its own child
process (wall time around the process, peak RSS from ``wait4``), plus the floor: one plain batched
forward pass over the same texts (batches of 64 in dataset order, dynamic padding).

LLM-MRI is installed by this script in its own venv (it pins numpy<2, transformers<5):
``apt-get install graphviz libgraphviz-dev`` (pygraphviz builds against it), then
``pip install torch==2.13.0 llm-mri "pyarrow<17"``. The per-cell counts and 2-D graph edges of
both tools are compared side by side.

    nice -n 10 flock /tmp/glassbox-heavy.lock .venv/bin/python -m benchmarks regions
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
N_PER_LABEL = int(os.environ.get("GLASSBOX_REGIONS_BENCH_PER_LABEL", "500"))  # smoke runs use fewer
LABELS = ("prose", "code")
GRID = 10
VENV = Path(os.environ.get("GLASSBOX_BENCH_DIR", Path.home() / ".cache" / "glassbox" / "bench")) / "llmmri-venv"
LLMMRI_PIP = ["torch==2.13.0", "llm-mri==0.2.1", "pyarrow<17"]

FLOOR = r'''
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
model_dir, data = sys.argv[1], sys.argv[2]
texts = [json.loads(line)["text"] for line in open(data)]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
n_tokens = 0
with torch.inference_mode():
    for i in range(0, len(texts), 64):
        enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=512, return_tensors="pt")
        n_tokens += int(enc["attention_mask"].sum())
        model(**enc)
print(json.dumps({"texts": len(texts), "tokens": n_tokens}))
'''

LLMMRI = r'''
import json, sys, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from datasets import load_from_disk
from llm_mri import ActivationAreas
from llm_mri.dimensionality_reduction import PCA
model_dir, data_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
ds = load_from_disk(data_dir)
aa = ActivationAreas(model=model_dir, device="cpu", dataset=ds,
                     reduction_method=PCA(n_components=2, gridsize=10, random_state=42))
aa.process_activation_areas()
names = ds.features["label"].names
counts, edges = {}, {}
for layer in range(aa.num_layers):
    for c, name in enumerate(names):
        aa.get_grid(layer, name); plt.close("all")          # their heatmap, as a user would draw it
        grid = aa.graph_class.reduced_dataset[layer]
        ct = pd.crosstab(grid.loc[grid.label == c, "Y"], grid.loc[grid.label == c, "X"])
        counts[f"{layer}|{name}"] = {f"{int(x)}_{int(y)}": int(ct.loc[y, x]) for y in ct.index for x in ct.columns
                                     if ct.loc[y, x]}
for name in names:
    g = aa.get_graph(name)
    edges[name] = {f"{u}>{v}": int(d["weight"]) for u, v, d in g.edges(data=True)}
json.dump({"layers": aa.num_layers, "counts": counts, "edges": edges}, open(out, "w"))
'''


def run_child(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall seconds and peak RSS (MiB) of the child from ``os.wait4``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_lines: list[str] = []
    err_tail: list[str] = []
    import threading

    def drain(stream: Any, sink: list[str], keep: int) -> None:
        for line in stream:
            sink.append(line)
            del sink[:-keep]

    threads = [threading.Thread(target=drain, args=(proc.stdout, out_lines, 50)),
               threading.Thread(target=drain, args=(proc.stderr, err_tail, 30))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{''.join(err_tail)}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "stdout": "".join(out_lines)}


def ensure_llmmri_venv() -> Path:
    """LLM-MRI 0.2.1 in its own venv (needs graphviz headers for pygraphviz)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import llm_mri, pygraphviz"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not Path("/usr/include/graphviz/cgraph.h").exists():
        raise SystemExit("llm_mri needs system graphviz headers: apt-get install graphviz libgraphviz-dev")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *LLMMRI_PIP], check=True)
    return python


def build_data(work: Path) -> tuple[Path, Path, Any]:
    """The 1,000 texts as JSONL (ours, the floor) and as a saved HF Dataset with ClassLabel (LLM-MRI)."""
    import datasets

    from analysis.regions.data import builtin_dataset
    from analysis.runtime import Runtime
    from analysis.settings import Settings

    rt = Runtime(Settings(cache_dir=str(work / "cache-builder")))
    ds = builtin_dataset(rt.samples, N_PER_LABEL, 10_000, labels=LABELS, max_chars=600)  # 200-600 chars: 500 prose exist
    jsonl = work / "texts.jsonl"
    with jsonl.open("w") as fh:
        for text, label in zip(ds.texts, ds.labels, strict=True):
            fh.write(json.dumps({"text": text, "label": label}) + "\n")
    hf = datasets.Dataset.from_dict({"text": list(ds.texts), "label": ds.label_ids.tolist()},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "label": datasets.ClassLabel(names=list(ds.classes))}))
    hf_dir = work / "hf"
    hf.save_to_disk(str(hf_dir))
    return jsonl, hf_dir, ds


def compare(ours_dir: Path, ref: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Per-cell counts and per-category 2-D edges/weights: ours vs LLM-MRI."""
    import numpy as np

    saved = np.load(ours_dir / "counts.npz")
    counts, ours_classes = saved["counts"], [str(c) for c in saved["classes"]]  # [L, C, y, x]
    cells_total = cells_equal = 0
    for key, theirs in ref["counts"].items():
        layer, name = key.split("|")
        mine = counts[int(layer), ours_classes.index(name)]
        dense = np.zeros_like(mine)
        for xy, n in theirs.items():
            x, y = (int(v) for v in xy.split("_"))
            dense[y, x] = n
        cells_total += dense.size
        cells_equal += int((dense == mine).sum())
    graph = json.loads((ours_dir / "graph.json").read_text())
    edges_total = edges_equal = 0
    for name in classes:
        attr = "weight_" + "".join(ch if ch.isalnum() else "_" for ch in name)
        mine = {f"{e['source']}>{e['target']}": int(e[attr]) for e in graph["edges"] if e.get(attr)}
        theirs = ref["edges"][name]
        keys = set(mine) | set(theirs)
        edges_total += len(keys)
        edges_equal += sum(1 for k in keys if mine.get(k) == theirs.get(k))
    return {"cells_compared": cells_total, "cells_equal": cells_equal, "edges_compared": edges_total,
            "edges_equal": edges_equal}


def main() -> None:
    from analysis.embedded import minilm_dir
    from analysis.settings import EMBEDDED_ENCODER

    python = ensure_llmmri_venv()
    work = Path(tempfile.mkdtemp(prefix="regions-bench-"))
    try:
        jsonl, hf_dir, ds = build_data(work)
        model_dir = str(minilm_dir())
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        (work / "floor.py").write_text(FLOOR)
        (work / "llmmri.py").write_text(LLMMRI)
        print(f"{len(ds)} texts ({', '.join(f'{k}: {v}' for k, v in ds.counts().items())}); MiniLM-L6 at {model_dir}",
              flush=True)

        floor = run_child([sys.executable, str(work / "floor.py"), model_dir, str(jsonl)], env=env)
        print(f"floor   {floor['wall_s']:8.1f} s {floor['peak_rss_mib']:8.0f} MiB  {floor['stdout'].strip()}", flush=True)
        ours_env = dict(env, GLASSBOX_CACHE_DIR=str(work / "cache-ours"), PYTHONPATH=str(ROOT))
        ours = run_child([sys.executable, "-m", "analysis.regions.pipeline", "--file", str(jsonl), "--model", EMBEDDED_ENCODER,
                          "--pooling", "first", "--method", "pca", "--components", "2", "--grid", str(GRID),
                          "--categories", ",".join(LABELS), "--out", str(work / "ours")], env=ours_env, cwd=ROOT)
        print(f"ours    {ours['wall_s']:8.1f} s {ours['peak_rss_mib']:8.0f} MiB", flush=True)
        theirs = run_child([str(python), str(work / "llmmri.py"), model_dir, str(hf_dir), str(work / "llmmri.json")],
                           env=dict(env, MPLBACKEND="Agg"), cwd=work)
        print(f"llm_mri {theirs['wall_s']:8.1f} s {theirs['peak_rss_mib']:8.0f} MiB", flush=True)
        agreement = compare(work / "ours", json.loads((work / "llmmri.json").read_text()), list(ds.classes))
    finally:
        if not os.environ.get("GLASSBOX_REGIONS_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "texts": len(ds), "labels": list(ds.classes), "model": "all-MiniLM-L6-v2", "pooling": "first",
        "reduction": "PCA 2-D", "grid": GRID, "tokens": json.loads(floor["stdout"])["tokens"],
        "floor": {k: floor[k] for k in ("wall_s", "peak_rss_mib")},
        "ours": {k: ours[k] for k in ("wall_s", "peak_rss_mib")},
        "llm_mri": {k: theirs[k] for k in ("wall_s", "peak_rss_mib")},
        "ours_over_floor_time": round(ours["wall_s"] / floor["wall_s"], 3),
        "llm_mri_over_ours_time": round(theirs["wall_s"] / ours["wall_s"], 2),
        "ours_over_llm_mri_memory": round(ours["peak_rss_mib"] / theirs["peak_rss_mib"], 3),
        "agreement": agreement,
        "targets": {"time_within_1.3x_floor": ours["wall_s"] <= 1.3 * floor["wall_s"],
                    "memory_at_most_quarter_of_llm_mri": ours["peak_rss_mib"] <= theirs["peak_rss_mib"] / 4},
    }
    print(textwrap.dedent(f"""
        {'':10}{'wall s':>10}{'peak MiB':>10}
        {'floor':10}{floor['wall_s']:10.1f}{floor['peak_rss_mib']:10.0f}
        {'ours':10}{ours['wall_s']:10.1f}{ours['peak_rss_mib']:10.0f}
        {'llm_mri':10}{theirs['wall_s']:10.1f}{theirs['peak_rss_mib']:10.0f}
        ours/floor time {result['ours_over_floor_time']}x · llm_mri/ours time {result['llm_mri_over_ours_time']}x ·
        ours/llm_mri memory {result['ours_over_llm_mri_memory']}x · cells equal {agreement['cells_equal']}/{agreement['cells_compared']}
        · edges equal {agreement['edges_equal']}/{agreement['edges_compared']}"""))
    write_result("regions", result)


if __name__ == "__main__":
    main()
