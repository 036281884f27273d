"""A neuron's explanation: its index record as :class:`analysis.explain.UnitEvidence` (summary + LLM)."""

from __future__ import annotations

from typing import Any

from analysis.explain import Example, UnitEvidence, llm_explanation, llm_prompt, summary_text
from analysis.neurons.store import UnitRecord
from analysis.settings import Settings


def evidence(record: UnitRecord, patterns: list[dict[str, Any]] | None = None) -> UnitEvidence:
    """What the index knows of a unit, in the explainer's terms."""
    extra = []
    if patterns:
        shown = []
        for p in patterns[:3]:
            pieces = [("·" if t == "·" else f"'{t}'") for t in p["pattern"]]
            shown.append(f"{' '.join(pieces)} ({p['count']}×)")
        extra.append("Context patterns (pruned + ablated): " + "; ".join(shown) + ".")
    q = record.quantiles
    where = f"layer {record.layer}, #{record.unit}" if record.layer is not None else f"SAE, #{record.unit}"
    return UnitEvidence(
        kind="feature" if record.kind == "sae" else "neuron", name=where,
        top_tokens=[(t["token"], int(t["count"])) for t in record.top_tokens],
        examples=[Example(tokens=list(s.tokens), center=s.pos - s.start, value=float(s.act)) for s in record.snippets],
        max_act=float(record.max_act), median_act=q.get("0.5"), p99_act=q.get("0.99"), frac_active=record.frac_pos,
        extra=extra,
    )


def unit_summary(record: UnitRecord, patterns: list[dict[str, Any]] | None = None) -> str:
    return summary_text(evidence(record, patterns))


def unit_llm_explanation(settings: Settings, record: UnitRecord) -> str | None:
    return llm_explanation(settings, evidence(record))


def unit_llm_prompt(record: UnitRecord) -> str:
    return llm_prompt(evidence(record))
