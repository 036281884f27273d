"""What the Neurons page and the JSON API show, as plain JSON-able dicts (index + model + caches).

Every entry point takes the runtime first; a request resolves its model and index once (``NeuronView``)
and passes them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from analysis.cache import content_key
from analysis.capture import capture
from analysis.io import pad_id, pad_right, special_prefix, token_ids_for
from analysis.models import LoadedModel
from analysis.neurons.explain import unit_llm_explanation, unit_summary
from analysis.neurons.graph import neuron_graph
from analysis.neurons.index import neuron_direction, open_index, readout_dict
from analysis.neurons.store import NeuronIndex, NotFound, UnitRecord
from analysis.params import parse_int
from analysis.readout import logit_readout
from analysis.runtime import Runtime


@dataclass
class NeuronView:
    """A request's resolved handles: the model and its index (and the index's SAE when it has one)."""

    runtime: Runtime
    lm: LoadedModel
    index: NeuronIndex

    @classmethod
    def open(cls, runtime: Runtime, model_id: str, index_id: str | None = None) -> NeuronView:
        index = open_index(runtime, model_id, index_id)
        return cls(runtime, runtime.model(model_id), index)

    def sae(self) -> Any:
        from analysis.features import load_sae

        return load_sae(self.runtime, self.index.meta["config"]["sae"], self.lm.model_id, self.lm.device)

    def encoder(self, group: str) -> Any:
        return self.sae().encode if group == "sae" else None

    def direction(self, layer: int | str, unit: int) -> torch.Tensor:
        if layer == "sae":
            return self.sae().W_dec()[unit]
        return neuron_direction(self.lm, int(layer), unit)


def parse_layer(value: Any, field: str | None = None) -> int | str:
    """A layer number, or "sae" for the features of the index's SAE; bad values name the problem."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip()
    if text.lower() == "sae":
        return "sae"
    return parse_int(text, "Layer (a number, or 'sae')", 0, None, field=field)


def parse_unit(value: Any, field: str | None = None) -> int:
    return parse_int(value, "Neuron", 0, None, field=field)


def similar_units(index: NeuronIndex, layer: int | str, unit: int, n: int = 10) -> list[dict[str, Any]]:
    """Top similar units by cosine (activation patterns), each also scored by token-set Jaccard."""
    out = index.similar(layer, unit, n, "cosine")
    mine = index.token_set(index.group(layer).name, unit)
    for item in out:
        theirs = index.token_set(item["group"], item["unit"])
        item["jaccard"] = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0
        item["cosine"] = item.pop("similarity")
        item.pop("measure")
    return out


def neuron_record(runtime: Runtime, model_id: str, layer: Any, unit: Any, index_id: str | None = None,
                  n_snippets: int | None = None, n_similar: int = 10, graph: bool = False,
                  llm: bool = False) -> dict[str, Any]:
    """A unit's full record: stats, quantiles, top tokens, snippets, similar units, logit effects, explanation."""
    view = NeuronView.open(runtime, model_id, index_id)
    layer = parse_layer(layer, "neurons-layer")
    unit = parse_unit(unit, "neurons-neuron")
    record = view.index.unit(layer, unit, n_snippets)
    out = record.as_dict()
    out["index_id"] = view.index.index_id
    out["similar"] = similar_units(view.index, layer, unit, n_similar)
    causal = view.lm.info.is_causal
    out["logit_effects"] = readout_dict(logit_readout(view.lm, view.direction(layer, unit))) if causal else None
    patterns = None
    if graph:
        out["graph"] = graph_for(view, layer, unit)
        patterns = out["graph"]["summary"]
    explanation = {"summary": unit_summary(record, patterns), "llm": None}
    if llm:
        explanation["llm"] = cached_llm(view, record)
    out["explanation"] = explanation
    return out


def cached_llm(view: NeuronView, record: UnitRecord) -> str | None:
    settings = view.runtime.settings
    if not settings.openai_base_url:
        return None
    key = content_key("neuron-llm", view.index.index_id, view.index.meta.get("started"), record.group, record.unit,
                      settings.openai_base_url, settings.openai_model)
    return view.runtime.disk.get_or_compute(key, lambda: unit_llm_explanation(settings, record))


def graph_for(view: NeuronView, layer: int | str, unit: int, n: int = 6) -> dict[str, Any]:
    """The Neuron2Graph-style graph of a unit (batched pruning/ablation forwards; cached on disk)."""
    index = view.index
    g = index.group(layer)

    def compute() -> dict[str, Any]:
        snippets = index.snippets(layer, unit, n)
        rows = {s.row_id: index.row_ids(s.row_id) for s in snippets}
        return neuron_graph(view.lm, g.site, unit, snippets, rows, special_prefix(view.lm.tokenizer),
                            encode=view.encoder(g.name))

    key = content_key("neuron-graph", index.index_id, index.meta.get("started"), g.name, unit, n, 1)
    return view.runtime.disk.get_or_compute(key, compute)


def whole_rows(runtime: Runtime, model_id: str, layer: Any, unit: int, index_id: str | None = None,
               n: int | None = None) -> list[dict[str, Any]]:
    """The top snippets' whole rows with the unit's activation on every token ("show whole sample").

    The index keeps only a window per snippet, so the rows are re-run once (one batched forward up to the
    unit's layer) and cached on disk.
    """
    view = NeuronView.open(runtime, model_id, index_id)
    layer = parse_layer(layer)
    index = view.index
    g = index.group(layer)
    snippets = index.snippets(layer, unit, n)

    def compute() -> list[dict[str, Any]]:
        rows = [index.row_ids(s.row_id) for s in snippets]
        if not rows:
            return []
        ids, mask = pad_right(rows, pad_id(view.lm.tokenizer))
        acts = capture(view.lm, ids, [g.site], attention_mask=mask, logits=False, stop_early=True).acts[g.site]
        encode = view.encoder(g.name)
        if encode is not None:
            acts = encode(acts)
        values = acts[..., unit].float().cpu()
        return [{"rank": s.rank, "row_id": s.row_id, "pos": s.pos, "act": s.act, "start": 0, "token_ids": r,
                 "tokens": index.decode(r), "acts": values[i, : len(r)].tolist()}
                for i, (s, r) in enumerate(zip(snippets, rows, strict=True))]

    key = content_key("neuron-rows", index.index_id, index.meta.get("started"), g.name, unit, len(snippets))
    return runtime.disk.get_or_compute(key, compute)


def unit_on_text(runtime: Runtime, model_id: str, layer: Any, unit: Any, text: str,
                 index_id: str | None = None, edits: Any = ()) -> dict[str, Any]:
    """Neuroscope's "try your own text": the unit's activation on every token of a text (the cached run;
    with ``edits``, the edited run's)."""
    view = NeuronView.open(runtime, model_id, index_id)
    layer = parse_layer(layer, "neurons-layer")
    unit = parse_unit(unit, "neurons-neuron")
    g = view.index.group(layer)
    if not 0 <= unit < g.width:
        raise NotFound(f"Neuron {unit} does not exist: {g.name} has units 0..{g.width - 1}.")
    run = runtime.run(model_id, text, [g.site], edits=edits)
    acts = run.act(g.site)
    encode = view.encoder(g.name)
    values = (encode(acts) if encode is not None else acts)[..., unit].float().cpu().tolist()
    return {"tokens": run.tokens, "acts": values, "max_act": max(values) if values else 0.0,
            "index_max": view.index.unit(layer, unit, 0).max_act}


def search_token(runtime: Runtime, model_id: str, token: str, limit: int = 50,
                 index_id: str | None = None) -> dict[str, Any]:
    view = NeuronView.open(runtime, model_id, index_id)
    ids = token_ids_for(view.lm.tokenizer, token)
    return {"query": token, "token_ids": ids, "token_strings": view.index.decode(ids),
            "results": view.index.units_for_tokens(ids, limit)}


def layer_ranking(runtime: Runtime, model_id: str, layer: Any, sort: str = "max", limit: int = 50, offset: int = 0,
                  index_id: str | None = None) -> dict[str, Any]:
    index = open_index(runtime, model_id, index_id)
    layer = parse_layer(layer)
    return {"model": model_id, "layer": layer, "sort": sort, "index_id": index.index_id,
            "neurons": index.ranked(layer, sort, limit, offset)}


def compare(runtime: Runtime, model_id: str, a: tuple[Any, Any], b: tuple[Any, Any],
            index_id: str | None = None) -> dict[str, Any]:
    """Two units side by side: both similarities and their activations on the shared token sample."""
    index = open_index(runtime, model_id, index_id)
    ua = (parse_layer(a[0], "neurons-layer"), parse_unit(a[1], "neurons-neuron"))
    ub = (parse_layer(b[0], "neurons-layer-b"), parse_unit(b[1], "neurons-neuron-b"))
    sims = index.similarity(ua, ub)
    xa, xb = index.sample_pair(ua, ub)
    return {"a": {"layer": ua[0], "unit": ua[1]}, "b": {"layer": ub[0], "unit": ub[1]}, **sims,
            "sample_a": xa.tolist(), "sample_b": xb.tolist()}


def feature_record(runtime: Runtime, model_id: str, feature: Any, index_id: str | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """An SAE feature's record from a neuron index built with ``--sae`` (404 when there is none)."""
    index = open_index(runtime, model_id, index_id)
    if not index.has_sae:
        raise NotFound(f"The neuron index of '{model_id}' has no SAE features: build one with "
                       f"`make index ARGS='--model {model_id} --sae embedded'`.")
    return neuron_record(runtime, model_id, "sae", feature, index.index_id, **kwargs)

