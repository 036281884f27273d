"""Shared by several test modules: a small neuron index of the embedded SmolLM2 (built once via the CLI)
and random sae-lens SAEs saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from analysis.neurons import IndexConfig
from analysis.settings import EMBEDDED_LM

LAYERS = "0-3"
ARGS = ["build", "--model", EMBEDDED_LM, "--corpus", "prose", "--tokens", "320", "--seq-len", "40",
        "--top-k", "5", "--batch-size", "4", "--layers", LAYERS]


def index_config() -> IndexConfig:
    """The config the CLI arguments above produce."""
    return IndexConfig(model_id=EMBEDDED_LM, corpus="prose", n_tokens=320, seq_len=40, top_k=5, batch_size=4,
                       layers=[0, 1, 2, 3])


def ensure_index(runtime) -> Path:
    """Build (or reuse, when complete) the test index with ``python -m analysis.neurons build``."""
    from analysis.neurons import index_path
    from analysis.neurons.index import build_command

    path = index_path(runtime, index_config())
    assert build_command(ARGS) == 0
    assert path.is_file()
    return path


def make_sae(path: Path, d_in: int = 576, d_sae: int = 96, hook: str = "blocks.15.hook_resid_post",
             model_name: str = "smollm2-135m-instruct", seed: int = 0, model_id: str | None = EMBEDDED_LM,
             model_class: str | None = None) -> str:
    """A randomly initialised sae-lens StandardSAE saved in sae-lens format (with a negative bias so
    it is sparse-ish)."""
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    cfg.metadata.model_name = model_name
    if model_class:
        cfg.metadata.model_class_name = model_class
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.fill_(-2.0)
    sae.save_model(str(path))
    if model_id:
        (path / "glassbox.json").write_text(json.dumps({"model_id": model_id}))
    return str(path)





# ---- Dash callbacks over HTTP (the real error path: on_error -> field marks / page alert) ----------------

class DashReply:
    """One ``/_dash-update-component`` answer: the outputs it set and the side updates (set_props)."""

    def __init__(self, status: int, body: dict | None) -> None:
        self.status = status
        self.outputs: dict = (body or {}).get("response", {})
        self.side: dict = (body or {}).get("sideUpdate", {})

    def alert(self, page: str) -> str | None:
        """The page alert's text when this reply opened it, else None."""
        props = self.side.get(f"{page}-error", {})
        return str(props.get("children")) if props.get("is_open") else None

    def field_error(self, field: str) -> str | None:
        """The message put beside ``field`` when this reply marked it invalid, else None."""
        if not self.side.get(field, {}).get("invalid"):
            return None
        return str(self.side.get(f"{field}-feedback", {}).get("children"))

    def message(self, page: str) -> str | None:
        """The one message this reply shows: an alert or a field's feedback."""
        if (text := self.alert(page)) is not None:
            return text
        for key, props in self.side.items():
            if props.get("invalid") and f"{key}-feedback" in self.side:
                return str(self.side[f"{key}-feedback"].get("children"))
        return None


def dash_call(client, app, output: str, values: dict[str, object]) -> DashReply:
    """Fire the callback whose outputs include ``output`` ("id.prop") with ``values`` ("id.prop" -> value;
    the rest None) as the browser would, through the app's own error handling."""
    import json as _json

    if not app.callback_map:
        client.get("/_dash-dependencies")  # Dash collects the callbacks on its first request
    keys = [k for k in app.callback_map if output in k.strip(".").split("...")]
    assert len(keys) == 1, f"{output}: {keys}"
    key = keys[0]
    spec = app.callback_map[key]

    def items(deps: list[dict]) -> list[dict]:
        out = []
        for dep in deps:
            name = dep["id"] if isinstance(dep["id"], str) else _json.dumps(dep["id"], sort_keys=True)
            out.append({"id": dep["id"], "property": dep["property"], "value": values.get(f"{name}.{dep['property']}")})
        return out

    outputs = []
    for part in key.strip(".").split("..."):
        cid, prop = part.rsplit(".", 1)
        outputs.append({"id": _json.loads(cid) if cid.startswith("{") else cid, "property": prop})
    inputs = items(spec["inputs"])
    payload = {"output": key, "outputs": outputs if key.startswith("..") else outputs[0], "inputs": inputs,
               "state": items(spec.get("state", [])),
               "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"] if inputs else []}
    resp = client.post("/_dash-update-component", json=payload)
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)[:2000]
    return DashReply(resp.status_code, resp.get_json(silent=True) if resp.status_code == 200 else None)


def plotly_array(value: object) -> np.ndarray:
    """A figure array as the browser receives it: a list, or plotly's typed array {dtype, bdata, shape}."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(x) for x in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    return np.asarray(value, dtype=float)
