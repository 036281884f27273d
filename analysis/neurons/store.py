"""The neuron index file: one SQLite database (stdlib ``sqlite3``) per (model, corpus, options).

Tables: ``meta`` (config, groups, status), ``rows`` (token ids of every scanned row), ``batches``
(processed batches, for resuming), ``units`` (stats, quantiles, top tokens per unit), ``snippets``
(top-k rows per unit with the activation window around the max), ``token_units`` (token -> units whose
max it most often carries; the token search), ``samples`` (activations on a strided token sample, for
cosine similarity).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import GlassboxError, NotFound  # noqa: F401 - NotFound is part of this module's face
from analysis.neurons.scanner import QUANTILES, Group

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS rows(row_id INTEGER PRIMARY KEY, ids BLOB);
CREATE TABLE IF NOT EXISTS batches(batch INTEGER PRIMARY KEY, at REAL);
CREATE TABLE IF NOT EXISTS units(grp TEXT, unit INTEGER, max_act REAL, min_act REAL, mean_act REAL,
    frac_pos REAL, quantiles TEXT, top_tokens TEXT, PRIMARY KEY(grp, unit)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snippets(grp TEXT, unit INTEGER, rank INTEGER, row_id INTEGER, pos INTEGER,
    act REAL, win BLOB, PRIMARY KEY(grp, unit, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_units(token_id INTEGER, grp TEXT, unit INTEGER, count INTEGER, max_act REAL);
CREATE INDEX IF NOT EXISTS token_units_tok ON token_units(token_id);
CREATE INDEX IF NOT EXISTS token_units_unit ON token_units(grp, unit);
CREATE TABLE IF NOT EXISTS samples(grp TEXT PRIMARY KEY, n INTEGER, width INTEGER, data BLOB);
"""


@dataclass
class Snippet:
    """One top-activating row of a unit: the window around its max, activations per token."""

    rank: int
    row_id: int
    pos: int  # position of the max in the row
    act: float
    start: int  # row position of the first window token
    token_ids: list[int]
    tokens: list[str]
    acts: list[float | None]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UnitRecord:
    """Everything the index holds about one neuron (or SAE feature)."""

    model_id: str
    group: str
    kind: str
    layer: int | None
    unit: int
    max_act: float
    min_act: float
    mean_act: float
    frac_pos: float
    quantiles: dict[str, float]
    top_tokens: list[dict[str, Any]]
    snippets: list[Snippet]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["snippets"] = [s.as_dict() for s in self.snippets]
        return out


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class NeuronIndex:
    """Read access to one index file (thread-safe: one connection behind a lock)."""

    def __init__(self, path: str | Path, decode: Callable[[list[int]], list[str]] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"No neuron index at {self.path}.")
        self.conn = connect(self.path)
        self.lock = threading.Lock()
        self.meta = {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}
        self.groups = [Group(**g) for g in self.meta.get("groups", [])]
        self.decode = decode or (lambda ids: [str(i) for i in ids])
        self._samples: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ---- identity ---------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.meta["config"]["model_id"]

    @property
    def index_id(self) -> str:
        return self.meta["index_id"]

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    def summary(self) -> dict[str, Any]:
        cfg = self.meta["config"]
        return {"index_id": self.index_id, "model_id": self.model_id, "corpus": cfg["corpus"],
                "tokens": self.meta.get("tokens", 0), "rows": self.meta.get("rows", 0), "status": self.meta.get("status"),
                "top_k": cfg["top_k"], "layers": [g.layer for g in self.groups if g.kind == "mlp"],
                "sae": cfg.get("sae"), "path": str(self.path)}

    def group(self, layer: int | str) -> Group:
        """The group of an MLP layer (int or "mlp{l}") or "sae"; NotFound names the valid range."""
        name = f"mlp{layer}" if isinstance(layer, int) else str(layer)
        for g in self.groups:
            if g.name == name:
                return g
        layers = [g.layer for g in self.groups if g.kind == "mlp"]
        span = f"layers {min(layers)}..{max(layers)}" if layers else "no layers"
        raise NotFound(f"Layer '{layer}' is not in this index ({span}{', sae' if self.has_sae else ''}).")

    @property
    def has_sae(self) -> bool:
        return any(g.kind == "sae" for g in self.groups)

    def _check_unit(self, g: Group, unit: int) -> None:
        if not isinstance(unit, int) or not 0 <= unit < g.width:
            what = "feature" if g.kind == "sae" else "neuron"
            raise NotFound(f"{what.capitalize()} {unit} does not exist in {g.name}: it has {what}s 0..{g.width - 1}.")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, tuple(args)).fetchall()

    # ---- records ------------------------------------------------------------------------------
    def row_ids(self, row_id: int) -> list[int]:
        rows = self._query("SELECT ids FROM rows WHERE row_id=?", (row_id,))
        if not rows:
            raise NotFound(f"Row {row_id} is not in this index.")
        return np.frombuffer(rows[0][0], dtype=np.int32).tolist()

    def snippets(self, layer: int | str, unit: int, limit: int | None = None) -> list[Snippet]:
        g = self.group(layer)
        self._check_unit(g, unit)
        before = self.meta["config"]["before"]
        rows = self._query("SELECT rank, row_id, pos, act, win FROM snippets WHERE grp=? AND unit=? ORDER BY rank"
                           + (f" LIMIT {int(limit)}" if limit else ""), (g.name, unit))
        out = []
        for rank, row_id, pos, act, win in rows:
            if row_id < 0:
                continue
            ids = self.row_ids(row_id)
            acts = np.frombuffer(win, dtype=np.float16).astype(np.float32)
            start = pos - before
            lo, hi = max(0, start), min(len(ids), start + len(acts))
            window = acts[lo - start : hi - start]
            token_ids = ids[lo:hi]
            out.append(Snippet(rank, row_id, pos, float(act), lo, token_ids, self.decode(token_ids),
                               [_f(v) for v in window.tolist()]))
        return out

    def unit(self, layer: int | str, unit: int, n_snippets: int | None = None) -> UnitRecord:
        g = self.group(layer)
        self._check_unit(g, unit)
        rows = self._query("SELECT max_act, min_act, mean_act, frac_pos, quantiles, top_tokens FROM units "
                           "WHERE grp=? AND unit=?", (g.name, unit))
        if not rows:
            raise NotFound(f"Unit {unit} of {g.name} has no record (index incomplete?).")
        mx, mn, mean, frac, qs, tops = rows[0]
        quantiles = {str(q): float(v) for q, v in zip(QUANTILES, json.loads(qs), strict=True)}
        top = json.loads(tops)
        strings = self.decode([t[0] for t in top])
        top_tokens = [{"token_id": t[0], "token": s, "count": t[1], "max_act": t[2]} for t, s in zip(top, strings, strict=True)]
        return UnitRecord(self.model_id, g.name, g.kind, g.layer, unit, float(mx), float(mn), float(mean), float(frac),
                          quantiles, top_tokens, self.snippets(layer, unit, n_snippets))

    def ranked(self, layer: int | str, sort: str = "max", limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Units of a layer ranked by max activation, activation range (max - min), or density."""
        g = self.group(layer)
        order = {"max": "max_act DESC", "range": "(max_act - min_act) DESC", "density": "frac_pos DESC",
                 "min": "min_act ASC"}
        if sort not in order:
            raise GlassboxError(f"sort must be one of {', '.join(order)}, got '{sort}'.")
        rows = self._query(f"SELECT unit, max_act, min_act, mean_act, frac_pos, top_tokens FROM units WHERE grp=? "
                           f"ORDER BY {order[sort]} LIMIT ? OFFSET ?", (g.name, int(limit), int(offset)))
        out = []
        for unit, mx, mn, mean, frac, tops in rows:
            top = json.loads(tops)[:3]
            out.append({"layer": g.layer, "group": g.name, "unit": unit, "max_act": mx, "min_act": mn,
                        "range": mx - mn, "mean_act": mean, "frac_pos": frac,
                        "top_tokens": self.decode([t[0] for t in top])})
        return out

    def units_for_tokens(self, token_ids: list[int], limit: int = 50) -> list[dict[str, Any]]:
        """Units whose top-activating positions are most often these tokens (search by token)."""
        if not token_ids:
            return []
        marks = ",".join("?" * len(token_ids))
        rows = self._query(f"SELECT token_id, grp, unit, count, max_act FROM token_units WHERE token_id IN ({marks}) "
                           "ORDER BY count DESC, max_act DESC LIMIT ?", (*token_ids, int(limit)))
        groups = {g.name: g for g in self.groups}
        strings = self.decode([r[0] for r in rows])
        return [{"token_id": tid, "token": s, "group": grp, "layer": groups[grp].layer, "unit": unit, "count": count,
                 "max_act": mx} for (tid, grp, unit, count, mx), s in zip(rows, strings, strict=True)]

    def token_set(self, group: str, unit: int) -> set[int]:
        return {r[0] for r in self._query("SELECT token_id FROM token_units WHERE grp=? AND unit=?", (group, unit))}

    # ---- similarity ---------------------------------------------------------------------------
    def sample(self, group: str) -> tuple[np.ndarray, np.ndarray]:
        """(activations [S, width] float32 on the sampled tokens, their column norms)."""
        if group not in self._samples:
            rows = self._query("SELECT n, width, data FROM samples WHERE grp=?", (group,))
            if not rows:
                raise NotFound(f"No similarity sample for {group}.")
            n, width, data = rows[0]
            mat = np.frombuffer(data, dtype=np.float16).reshape(-1, width)[:n].astype(np.float32)
            self._samples[group] = (mat, np.linalg.norm(mat, axis=0))
        return self._samples[group]

    def similar(self, layer: int | str, unit: int, n: int = 10, measure: str = "cosine",
                groups: list[str] | None = None) -> list[dict[str, Any]]:
        """The ``n`` most similar units (other than itself) by a symmetric measure.

        ``cosine``: cosine of the two units' activations over the sampled corpus tokens.
        ``jaccard``: |A ∩ B| / |A ∪ B| of the sets of tokens carrying their top activations.
        """
        g = self.group(layer)
        self._check_unit(g, unit)
        names = groups or [x.name for x in self.groups if x.kind == g.kind]
        found: list[tuple[float, str, int]] = []
        if measure == "cosine":
            vec, norms = self.sample(g.name)
            v = vec[:, unit]
            vn = float(np.linalg.norm(v)) or 1.0
            for name in names:
                mat, mnorm = self.sample(name)
                sims = (v @ mat) / (vn * np.maximum(mnorm, 1e-12))
                if name == g.name:
                    sims[unit] = -np.inf
                top = np.argpartition(-sims, min(n, len(sims) - 1))[:n]
                found += [(float(sims[i]), name, int(i)) for i in top]
        elif measure == "jaccard":
            mine = self.token_set(g.name, unit)
            if mine:
                marks = ",".join("?" * len(mine))
                rows = self._query(f"SELECT grp, unit, token_id FROM token_units WHERE (grp, unit) IN "
                                   f"(SELECT grp, unit FROM token_units WHERE token_id IN ({marks}))", tuple(mine))
                sets: dict[tuple[str, int], set[int]] = {}
                for name, other, tid in rows:
                    sets.setdefault((name, other), set()).add(tid)
                for (name, other), theirs in sets.items():
                    if (name == g.name and other == unit) or name not in names:
                        continue
                    found.append((len(mine & theirs) / len(mine | theirs), name, other))
        else:
            raise GlassboxError(f"measure must be 'cosine' or 'jaccard', got '{measure}'.")
        found.sort(key=lambda x: -x[0])
        groups_by = {x.name: x for x in self.groups}
        return [{"group": name, "layer": groups_by[name].layer, "unit": u, "similarity": s, "measure": measure}
                for s, name, u in found[:n]]

    def similarity(self, a: tuple[int | str, int], b: tuple[int | str, int]) -> dict[str, float]:
        """Both symmetric measures between two units."""
        ga, gb = self.group(a[0]), self.group(b[0])
        self._check_unit(ga, a[1])
        self._check_unit(gb, b[1])
        va, vb = self.sample(ga.name)[0][:, a[1]], self.sample(gb.name)[0][:, b[1]]
        denom = float(np.linalg.norm(va) * np.linalg.norm(vb)) or 1.0
        sa, sb = self.token_set(ga.name, a[1]), self.token_set(gb.name, b[1])
        jac = len(sa & sb) / len(sa | sb) if sa | sb else 0.0
        return {"cosine": float(va @ vb) / denom, "jaccard": jac}

    def sample_pair(self, a: tuple[int | str, int], b: tuple[int | str, int]) -> tuple[np.ndarray, np.ndarray]:
        ga, gb = self.group(a[0]), self.group(b[0])
        return self.sample(ga.name)[0][:, a[1]], self.sample(gb.name)[0][:, b[1]]

    def close(self) -> None:
        with self.lock:
            self.conn.close()
