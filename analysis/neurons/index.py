"""Neurons: build and open neuron indexes; logit effects; ``python -m analysis.neurons.index build ...``.

``build_index`` is the one function behind ``make index``/the CLI (tqdm progress) and the page's
background job (progress bar + cancel). Indexes live in ``<cache_dir>/neurons/*.sqlite``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.errors import GlassboxError, InputError
from analysis.io import RUN_LIKE, pack_rows, pad_id
from analysis.jobs import Job, quiet_job, tqdm_job
from analysis.models import LoadedModel
from analysis.neurons.scanner import (
    QUANTILES,
    Group,
    IndexConfig,
    Scanner,
    make_batches,
    mlp_group,
    quantiles_from_hist,
    run_scan,
    state_path,
    top_token_counts,
)
from analysis.neurons.store import NeuronIndex, NotFound, connect
from analysis.params import parse_ranges
from analysis.paths import looks_like_path, user_path
from analysis.readout import LogitReadout, logit_readout
from analysis.runtime import Runtime, get_runtime

INDEX_DIR = "neurons"
FORMAT = 3  # 3: log-linear histogram bins. Bump when rows or tables change meaning: the index id (file name) changes with it
BUILD_COMMAND = "make index ARGS='--model MODEL --tokens 20000'"


def index_dir(runtime: Runtime) -> Path:
    path = runtime.settings.cache_path / INDEX_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id).strip("_")[:60]


def index_id(cfg: IndexConfig) -> str:
    from analysis.cache import content_key

    return content_key("neuron-index", FORMAT, cfg.key_parts())[:16]


def index_path(runtime: Runtime, cfg: IndexConfig) -> Path:
    return index_dir(runtime) / f"{_slug(cfg.model_id)}-{index_id(cfg)}.sqlite"


# ---- corpus --------------------------------------------------------------------------------------
def corpus_texts(runtime: Runtime, corpus: str, n_tokens: int) -> list[str]:
    """The texts of a corpus: "training" (mixed sources), a sample source name, or a .txt/.jsonl file."""
    budget = max(2000, n_tokens * 6)  # ~4-5 characters per token; some slack
    lib = runtime.samples
    if corpus == "training":
        return lib.training_text(budget)
    if corpus in lib.sources():
        texts, total = [], 0
        for text in lib.text_chunks(corpus, 10**9, 200, 2000):
            texts.append(text)
            total += len(text)
            if total >= budget:
                break
        return texts
    if looks_like_path(corpus) or Path(corpus).expanduser().is_absolute():
        path = user_path(runtime.settings, corpus, "corpus file", kind="file", field="neurons-build-corpus")
        size = path.stat().st_size
        if size > runtime.settings.max_upload_bytes:
            raise InputError(f"Corpus file {path} has {size:,} bytes; the limit is "
                             f"{runtime.settings.max_upload_bytes:,} (max_upload_bytes in config.py).")
        raw = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix.lower() == ".jsonl":
            texts = [json.loads(line).get("text", "") for line in raw.splitlines() if line.strip()]
        else:
            texts = [p for p in re.split(r"\n\s*\n", raw)]
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            raise InputError(f"Corpus file {path} has no text.")
        return texts
    raise InputError(f"Unknown corpus '{corpus}': use 'training', one of {', '.join(lib.sources())}, "
                     "or the path of a .txt/.jsonl file.", field="neurons-build-corpus")


def corpus_rows(lm: LoadedModel, texts: list[str], n_tokens: int, seq_len: int) -> list[list[int]]:
    """Rows of exactly ``seq_len`` tokens (the last may be shorter), up to ``n_tokens``, packed by the one corpus
    packer (:data:`analysis.io.RUN_LIKE`: EOS between texts as Neuroscope does, each row starting like a run)."""
    return pack_rows(lm.tokenizer, texts, n_tokens, seq_len, RUN_LIKE)


# ---- build -----------------------------------------------------------------------------------------
def _groups(lm: LoadedModel, cfg: IndexConfig, sae: Any | None) -> list[Group]:
    layers = cfg.layers if cfg.layers is not None else list(range(lm.info.n_layers))
    groups = [mlp_group(layer, lm.info.d_mlp) for layer in layers]
    if sae is not None:
        groups.append(Group(name="sae", kind="sae", site=sae.site, width=sae.d_sae, layer=None))
    return groups


def _load_sae(runtime: Runtime, ref: str, lm: LoadedModel) -> Any:
    from analysis.features import check_fit, load_sae

    sae = load_sae(runtime, ref, lm.model_id, lm.device)
    check_fit(sae, lm)
    return sae


def build_index(runtime: Runtime, cfg: IndexConfig, job: Job | None = None, checkpoint_every_s: float = 60.0,
                path: Path | None = None) -> Path:
    """Scan the corpus and write the index; resumes a stopped build of the same config.

    Returns the index path; its meta ``status`` is "complete" or "stopped" (a cancelled job).
    """
    job = job or quiet_job()
    lm = runtime.model(cfg.model_id, job)
    cfg.check(lm.info.n_layers)
    path = path or index_path(runtime, cfg)
    conn = connect(path)
    meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    if meta.get("status") == "complete":
        conn.close()
        return path
    sae = _load_sae(runtime, cfg.sae, lm) if cfg.sae else None
    groups = _groups(lm, cfg, sae)
    if "rows" in meta:
        rows = [np.frombuffer(b, dtype=np.int32).tolist() for (b,) in conn.execute("SELECT ids FROM rows ORDER BY row_id")]
    else:
        job.phase("packing the corpus")
        rows = corpus_rows(lm, corpus_texts(runtime, cfg.corpus, cfg.n_tokens), cfg.n_tokens, cfg.seq_len)
        if not rows:
            raise InputError(f"Corpus '{cfg.corpus}' gave no rows of at least 8 tokens.")
        with conn:
            conn.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?)",
                             [(i, np.asarray(r, dtype=np.int32).tobytes()) for i, r in enumerate(rows)])
            _set_meta(conn, {"config": cfg.key_parts() | {"batch_size": cfg.batch_size}, "index_id": index_id(cfg),
                             "groups": [g.as_dict() for g in groups], "rows": len(rows),
                             "tokens": sum(len(r) for r in rows), "status": "running", "started": time.time()})
    batches = make_batches(rows, cfg.batch_size, pad_id(lm.tokenizer))
    scanner = Scanner(lm, cfg, groups, sum(len(r) for r in rows), sae=sae)
    start = 0
    spath = state_path(path)
    if spath.is_file():
        start = scanner.load(torch.load(spath, map_location="cpu", weights_only=False))

    def checkpoint(done: int) -> None:
        tmp = spath.with_suffix(".tmp")
        torch.save(scanner.state(done), tmp)
        tmp.replace(spath)
        with conn:
            conn.executemany("INSERT OR REPLACE INTO batches VALUES (?, ?)", [(i, time.time()) for i in range(done)])

    status = run_scan(scanner, batches, start, checkpoint, job, checkpoint_every_s)
    if status == "stopped":
        _set_meta(conn, {"status": "stopped"})
        conn.close()
        return path
    job.phase("writing the index", total=len(groups), unit="layers")
    write_units(conn, scanner, groups, torch.tensor([len(r) for r in rows]), job)
    with conn:
        conn.executemany("INSERT OR REPLACE INTO batches VALUES (?, ?)", [(i, time.time()) for i in range(len(batches))])
    _set_meta(conn, {"status": "complete", "finished": time.time(), "n_sampled": scanner.n_sampled})
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    spath.unlink(missing_ok=True)
    return path


def _set_meta(conn: Any, values: dict[str, Any]) -> None:
    with conn:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()])


def write_units(conn: Any, scanner: Scanner, groups: list[Group], row_lengths: torch.Tensor,
                job: Job | None = None) -> None:
    """Turn the running state into the ``units``, ``snippets``, ``token_units`` and ``samples`` tables.

    ``row_lengths[r]`` = tokens in corpus row r (windows are NaN beyond their row)."""
    for g in groups:
        st = scanner.states[g.name]
        vals_t, rows_t, pos_t, wins_t = st.top(row_lengths)
        hi = vals_t[0]
        lo = st.lo.cpu()
        qs = quantiles_from_hist(st.counts.cpu(), lo, hi).tolist()
        n = max(st.n_tokens, 1)
        mean = (st.total.cpu() / n).tolist()
        frac = (st.n_pos.cpu().double() / n).tolist()
        tops = top_token_counts(st.tok_ids.cpu(), st.tok_vals.cpu())
        hi_l, lo_l = hi.tolist(), lo.tolist()
        unit_rows = [(g.name, u, hi_l[u], lo_l[u], mean[u], frac[u], json.dumps([round(x, 5) for x in qs[u]]),
                      json.dumps(tops[u])) for u in range(g.width)]
        vals, rows, pos = vals_t.numpy(), rows_t.numpy(), pos_t.numpy()
        wins = wins_t.permute(0, 2, 1).contiguous().numpy().astype(np.float16)  # [rank, unit, window]
        snippet_rows = [(g.name, u, r, int(rows[r, u]), int(pos[r, u]), float(vals[r, u]), wins[r, u].tobytes())
                        for u in range(g.width) for r in range(vals.shape[0]) if rows[r, u] >= 0]
        token_rows = [(t[0], g.name, u, t[1], t[2]) for u in range(g.width) for t in tops[u]]
        sample = st.sample[: max(scanner.n_sampled, 1)].cpu().numpy().astype(np.float16)
        with conn:
            conn.execute("DELETE FROM units WHERE grp=?", (g.name,))
            conn.execute("DELETE FROM snippets WHERE grp=?", (g.name,))
            conn.execute("DELETE FROM token_units WHERE grp=?", (g.name,))
            conn.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?)", unit_rows)
            conn.executemany("INSERT INTO snippets VALUES (?, ?, ?, ?, ?, ?, ?)", snippet_rows)
            conn.executemany("INSERT INTO token_units VALUES (?, ?, ?, ?, ?)", token_rows)
            conn.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
                         (g.name, sample.shape[0], g.width, sample.tobytes()))
        if job is not None:
            job.advance()


# ---- finding and opening indexes -------------------------------------------------------------------
def _index_summary(runtime: Runtime, path: Path) -> dict[str, Any] | None:
    """One index file's summary, read once per file version (path, mtime)."""
    stat = path.stat()

    def read() -> dict[str, Any] | None:
        try:
            conn = connect(path)
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            conn.close()
        except Exception:  # noqa: BLE001 - a broken file is skipped, not fatal
            return None
        if "config" not in meta:
            return None
        cfg = meta["config"]
        return {"index_id": meta.get("index_id"), "model_id": cfg["model_id"], "corpus": cfg["corpus"],
                "tokens": meta.get("tokens", 0), "status": meta.get("status"), "sae": cfg.get("sae"),
                "top_k": cfg["top_k"], "n_layers": sum(1 for g in meta.get("groups", []) if g["kind"] == "mlp"),
                "path": str(path), "mtime": stat.st_mtime}

    return runtime.memo("neurons-index-files", 256).get_or_compute(("", str(path), stat.st_mtime_ns, stat.st_size), read)


def list_indexes(runtime: Runtime, model_id: str | None = None) -> list[dict[str, Any]]:
    """Summaries of the index files in the cache dir (biggest complete ones first); each file is read once
    per version, so listing on every request costs a directory scan."""
    out = []
    for path in sorted(index_dir(runtime).glob("*.sqlite")):
        try:
            summary = _index_summary(runtime, path)
        except OSError:  # removed meanwhile
            continue
        if summary is None or (model_id and summary["model_id"] != model_id):
            continue
        out.append(summary)
    out.sort(key=lambda m: (m["status"] != "complete", -m["n_layers"], -m["tokens"], -m["mtime"]))
    return out


def open_index(runtime: Runtime, model_id: str, index: str | None = None) -> NeuronIndex:
    """The chosen (or best complete) index of a model, opened once per file version."""
    if not runtime.registry.allowed(model_id):
        raise NotFound(f"Unknown model '{model_id}' (configured: {', '.join(runtime.settings.models)}).")
    found = [m for m in list_indexes(runtime, model_id) if m["status"] == "complete"]
    if index:
        found = [m for m in found if m["index_id"] == index]
        if not found:
            raise NotFound(f"No complete neuron index '{index}' for model '{model_id}'.")
    if not found:
        raise NotFound(f"No neuron index for model '{model_id}' yet: build one in the page's 'Index' tab "
                       f"or with `{BUILD_COMMAND.replace('MODEL', model_id)}`.")
    path = Path(found[0]["path"])
    stamp = path.stat().st_mtime_ns

    def open_it() -> NeuronIndex:
        return NeuronIndex(path, decode=runtime.model(model_id).decode)

    return runtime.memo("neurons-open", 8).get_or_compute((model_id, str(path), stamp), open_it)


def neuron_direction(lm: LoadedModel, layer: int, neuron: int) -> torch.Tensor:
    """The neuron's output weights (W_out row): the column ``neuron`` of the MLP's down projection, as it
    reaches the residual stream. Gemma 2/3 normalise the MLP output (RMSNorm) before adding it: that
    scales every token's whole output by a positive 1/rms and then by the norm's gain, so the neuron's
    direction in the stream is gain * W_out[:, neuron] (the per-token 1/rms rescales, never turns it)."""
    from analysis.readout import norm_gain
    from analysis.sites import arch_for, base_model_root, get_module

    if not 0 <= layer < lm.info.n_layers:
        raise NotFound(f"Layer {layer} does not exist: the model has layers 0..{lm.info.n_layers - 1}.")
    if not 0 <= neuron < lm.info.d_mlp:
        raise NotFound(f"Neuron {neuron} does not exist: layer {layer} has neurons 0..{lm.info.d_mlp - 1}.")
    spec = arch_for(lm.model)
    block = get_module(base_model_root(lm.model, spec), spec.layers)[layer]
    down = get_module(block, spec.mlp_down)
    weight = down.weight  # Linear: [d_model, d_mlp]; GPT-2 Conv1D: [d_mlp, d_model]
    column = weight[neuron].detach() if type(down).__name__ == "Conv1D" else weight[:, neuron].detach()
    post = get_module(block, spec.mlp_out_module)
    gain = norm_gain(post) if post is not down else None  # a post-MLP norm (Gemma 2/3)
    return column.float() * gain if gain is not None else column


def readout_dict(readout: LogitReadout) -> dict[str, list[dict[str, Any]]]:
    """A logit readout as the API's JSON: {"positive": [{token, token_id, logit}], "negative": [...]}."""
    from dataclasses import asdict

    return {"positive": [asdict(t) for t in readout.positive], "negative": [asdict(t) for t in readout.negative]}


def neuron_logits(lm: LoadedModel, layer: int, neuron: int, k: int = 10) -> dict[str, list[dict[str, Any]]]:
    """The neuron's direct effect on the logits (its W_out row through the one logit readout)."""
    return readout_dict(logit_readout(lm, neuron_direction(lm, layer, neuron), k))


QUANTILE_LABELS = [str(q) for q in QUANTILES]


def build_command(argv: list[str] | None = None) -> int:
    """``python -m analysis.neurons build|list``."""
    runtime = get_runtime()
    parser = argparse.ArgumentParser(prog="python -m analysis.neurons", description="Neuron index tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="scan a corpus and build (or resume) a neuron index")
    b.add_argument("--model", default=None, help="model id (default: the configured default model)")
    b.add_argument("--corpus", default="training", help="'training', a sample source (prose, code, ...) or a .txt/.jsonl file")
    b.add_argument("--tokens", type=int, default=20_000, help="tokens to scan")
    b.add_argument("--seq-len", type=int, default=64)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--top-k", type=int, default=20)
    b.add_argument("--layers", default=None, help="e.g. 0-5,12 (default: every layer)")
    b.add_argument("--sae", default=None, help="also index the features of this SAE (see the Features page)")
    sub.add_parser("list", help="list the indexes in the cache dir")
    args = parser.parse_args(argv)
    if args.command == "list":
        for m in list_indexes(runtime):
            print(f"{m['index_id']}  {m['status']:9s} {m['model_id']}  corpus={m['corpus']} tokens={m['tokens']:,} "
                  f"layers={m['n_layers']} sae={m['sae']}  {m['path']}")
        return 0
    model_id = args.model or runtime.settings.default_model
    try:
        lm = runtime.model(model_id)
        cfg = IndexConfig(model_id=model_id, corpus=args.corpus, n_tokens=args.tokens, seq_len=args.seq_len,
                          top_k=args.top_k, layers=parse_ranges(args.layers, "Layers", 0, lm.info.n_layers - 1),
                          sae=args.sae, batch_size=args.batch_size)
        path = build_index(runtime, cfg, tqdm_job("neuron index"))
    except GlassboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"index: {path}")
    return 0
