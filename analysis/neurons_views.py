"""What the Neurons page and the JSON API show, as plain JSON-able dicts (index + model + caches)."""

from __future__ import annotations

from typing import Any

import torch

from analysis.cache import content_key
from analysis.capture import capture, pad_right
from analysis.errors import InputError
from analysis.neurons import logit_effects, neuron_direction, open_index, special_prefix, token_ids_for
from analysis.neurons_explain import llm_explanation, summary_text
from analysis.neurons_graph import neuron_graph
from analysis.neurons_store import NeuronIndex, NotFound, UnitRecord
from analysis.runtime import Runtime, get_runtime


def parse_layer(value: Any) -> int | str:
    """A layer number, or "sae" for the features of the index's SAE; bad values name the problem."""
    if isinstance(value, int):
        return value
    text = str(value if value is not None else "").strip()
    if text.lower() == "sae":
        return "sae"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"layer must be an integer (or 'sae'), got '{value}'.") from None


def parse_int(value: Any, name: str, low: int = 0, high: int | None = None, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise InputError(f"{name} is required.")
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer, got '{value}'.") from None
    if out < low or (high is not None and out > high):
        raise InputError(f"{name} must be in [{low}, {high if high is not None else '∞'}], got {out}.")
    return out


def _encode_for(index: NeuronIndex, group: str, runtime: Runtime) -> Any:
    if group != "sae":
        return None
    from analysis.features_sae import load_sae

    return load_sae(index.meta["config"]["sae"], runtime.settings.cache_dir).encode


def unit_direction(index: NeuronIndex, layer: int | str, unit: int, runtime: Runtime) -> torch.Tensor:
    lm = runtime.model(index.model_id)
    if layer == "sae":
        from analysis.features_sae import load_sae

        return load_sae(index.meta["config"]["sae"], runtime.settings.cache_dir).W_dec()[unit]
    return neuron_direction(lm, int(layer), unit)


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


def neuron_record(model_id: str, layer: Any, unit: Any, index_id: str | None = None, n_snippets: int | None = None,
                  n_similar: int = 10, graph: bool = False, llm: bool = False,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """A unit's full record: stats, quantiles, top tokens, snippets, similar units, logit effects, explanation."""
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    layer = parse_layer(layer)
    unit = parse_int(unit, "neuron")
    record = index.unit(layer, unit, n_snippets)
    out = record.as_dict()
    out["index_id"] = index.index_id
    out["similar"] = similar_units(index, layer, unit, n_similar)
    lm = runtime.model(model_id)
    out["logit_effects"] = logit_effects(lm, unit_direction(index, layer, unit, runtime)) if lm.info.is_causal else None
    patterns = None
    if graph:
        out["graph"] = graph_for(index, layer, unit, runtime)
        patterns = out["graph"]["summary"]
    explanation = {"summary": summary_text(record, patterns), "llm": None}
    if llm:
        explanation["llm"] = cached_llm(runtime, index, record)
    out["explanation"] = explanation
    return out


def cached_llm(runtime: Runtime, index: NeuronIndex, record: UnitRecord) -> str | None:
    if not runtime.settings.openai_base_url:
        return None
    key = content_key("neuron-llm", index.index_id, index.meta.get("started"), record.group, record.unit, runtime.settings.openai_base_url,
                      runtime.settings.openai_model)
    return runtime.disk.get_or_compute(key, lambda: llm_explanation(runtime.settings, record))


def graph_for(index: NeuronIndex, layer: int | str, unit: int, runtime: Runtime, n: int = 6) -> dict[str, Any]:
    """The Neuron2Graph-style graph of a unit (batched pruning/ablation forwards; cached on disk)."""
    g = index.group(layer)

    def compute() -> dict[str, Any]:
        lm = runtime.model(index.model_id)
        snippets = index.snippets(layer, unit, n)
        rows = {s.row_id: index.row_ids(s.row_id) for s in snippets}
        return neuron_graph(lm, g.site, unit, snippets, rows, special_prefix(lm.tokenizer),
                            encode=_encode_for(index, g.name, runtime))

    return runtime.disk.get_or_compute(content_key("neuron-graph", index.index_id, index.meta.get("started"), g.name, unit, n, 1), compute)


def whole_rows(model_id: str, layer: Any, unit: int, index_id: str | None = None, n: int | None = None,
               runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """The top snippets' whole rows with the unit's activation on every token ("show whole sample").

    The index keeps only a window per snippet, so the rows are re-run once (one batched forward up to the
    unit's layer) and cached on disk.
    """
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    layer = parse_layer(layer)
    g = index.group(layer)
    snippets = index.snippets(layer, unit, n)

    def compute() -> list[dict[str, Any]]:
        lm = runtime.model(model_id)
        rows = [index.row_ids(s.row_id) for s in snippets]
        if not rows:
            return []
        ids, mask = pad_right(rows, lm.tokenizer.pad_token_id or 0)
        acts = capture(lm, ids, [g.site], attention_mask=mask, logits=False, stop_early=True).acts[g.site]
        encode = _encode_for(index, g.name, runtime)
        if encode is not None:
            acts = encode(acts)
        values = acts[..., unit].float().cpu()
        out = []
        for i, (s, r) in enumerate(zip(snippets, rows, strict=True)):
            out.append({"rank": s.rank, "row_id": s.row_id, "pos": s.pos, "act": s.act, "start": 0, "token_ids": r,
                        "tokens": index.decode(r), "acts": values[i, : len(r)].tolist()})
        return out

    return runtime.disk.get_or_compute(content_key("neuron-rows", index.index_id, index.meta.get("started"), g.name, unit, len(snippets)), compute)


def search_token(model_id: str, token: str, limit: int = 50, index_id: str | None = None,
                 runtime: Runtime | None = None) -> dict[str, Any]:
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    ids = token_ids_for(runtime.model(model_id), token)
    return {"query": token, "token_ids": ids, "token_strings": index.decode(ids),
            "results": index.units_for_tokens(ids, limit)}


def layer_ranking(model_id: str, layer: Any, sort: str = "max", limit: int = 50, offset: int = 0,
                  index_id: str | None = None, runtime: Runtime | None = None) -> dict[str, Any]:
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    layer = parse_layer(layer)
    return {"model": model_id, "layer": layer, "sort": sort, "index_id": index.index_id,
            "neurons": index.ranked(layer, sort, limit, offset)}


def compare(model_id: str, a: tuple[Any, Any], b: tuple[Any, Any], index_id: str | None = None,
            runtime: Runtime | None = None) -> dict[str, Any]:
    """Two units side by side: both similarities and their activations on the shared token sample."""
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    ua = (parse_layer(a[0]), parse_int(a[1], "neuron"))
    ub = (parse_layer(b[0]), parse_int(b[1], "neuron"))
    sims = index.similarity(ua, ub)
    xa, xb = index.sample_pair(ua, ub)
    return {"a": {"layer": ua[0], "unit": ua[1]}, "b": {"layer": ub[0], "unit": ub[1]}, **sims,
            "sample_a": xa.tolist(), "sample_b": xb.tolist()}


def feature_record(model_id: str, feature: Any, index_id: str | None = None, runtime: Runtime | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """An SAE feature's record from a neuron index built with ``--sae`` (404 when there is none)."""
    runtime = runtime or get_runtime()
    index = open_index(model_id, index_id, runtime)
    if not index.has_sae:
        raise NotFound(f"The neuron index of '{model_id}' has no SAE features: build one with "
                       f"`make index ARGS='--model {model_id} --sae embedded'`.")
    return neuron_record(model_id, "sae", feature, index.index_id, runtime=runtime, **kwargs)
