"""Explanations of a unit (an MLP neuron or an SAE feature): a plain summary of where it fires, and an
LLM-written sentence when an OpenAI-compatible endpoint is configured.

One home for both pages: Neurons and Features describe a unit as a :class:`UnitEvidence` (its top tokens,
its strongest examples, its activation range) and get the same summary and the same prompt. The LLM call
is off unless ``settings.openai_base_url`` is set; it POSTs one chat completion with plain ``urllib`` (no
SDK, never required).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from analysis.errors import GlassboxError
from analysis.settings import Settings

SYSTEM_PROMPT = (
    "You explain what a single unit (a neuron or a sparse-autoencoder feature) of a language model responds "
    "to. You get text excerpts where it fires most; the token where it fires is marked with << >> and its "
    "activation is given. Answer with one short sentence (max 25 words) naming the pattern, no preamble."
)


@dataclass
class Example:
    """One excerpt: its tokens, the index of the activating token, and the activation there."""

    tokens: list[str]
    center: int
    value: float


@dataclass
class UnitEvidence:
    """What an explanation is written from."""

    kind: str  # "neuron" | "feature"
    name: str  # e.g. "layer 3, #120" or "SAE feature 17"
    top_tokens: list[tuple[str, int]]  # (token, how many of the top activations sit on it)
    examples: list[Example]
    max_act: float
    median_act: float | None = None
    p99_act: float | None = None
    frac_active: float | None = None  # of scanned tokens
    extra: list[str] = field(default_factory=list)  # further sentences (e.g. context patterns)


def show(token: str) -> str:
    """A token inside a sentence: newlines and tabs as symbols (never a literal backslash-n), spaces as they are."""
    return token.replace("\r", "").replace("\n", "↵").replace("\t", "⇥") or "∅"


def summary_text(unit: UnitEvidence) -> str:
    """A plain-language summary of the unit's top tokens, strongest example and activation range."""
    parts = []
    if unit.top_tokens:
        total = sum(c for _t, c in unit.top_tokens) or 1
        listed = ", ".join(f"'{show(t)}' ({c})" for t, c in unit.top_tokens[:5])
        parts.append(f"Its {total} highest activations fall mostly on {listed}.")
    if unit.examples:
        best = unit.examples[0]
        if 0 <= best.center < len(best.tokens):
            before = "".join(best.tokens[max(0, best.center - 6) : best.center])
            parts.append(f"Strongest example ({best.value:.2f}): …{show(before)}[{show(best.tokens[best.center])}].")
    parts += unit.extra
    facts = []
    if unit.median_act is not None:
        facts.append(f"median activation {unit.median_act:.3g}")
    if unit.p99_act is not None:
        facts.append(f"99th percentile {unit.p99_act:.3g}")
    facts.append(f"max {unit.max_act:.3g}")
    line = ", ".join(facts)
    if unit.frac_active is not None:
        line += f"; active on {unit.frac_active:.2%} of scanned tokens"
    parts.append(line[0].upper() + line[1:] + ".")
    return f"This {unit.kind} ({unit.name}): " + " ".join(parts)


def llm_prompt(unit: UnitEvidence, n: int = 8) -> str:
    lines = []
    for ex in unit.examples[:n]:
        i = ex.center
        token = ex.tokens[i] if 0 <= i < len(ex.tokens) else ""
        text = "".join(ex.tokens[:i]) + "<<" + token + ">>" + "".join(ex.tokens[i + 1 :])
        lines.append(f"activation {ex.value:.2f}: {text!r}")
    tops = ", ".join(repr(t) for t, _c in unit.top_tokens[:8])
    return f"Top tokens: {tops}\nExcerpts:\n" + "\n".join(lines)


def llm_request(settings: Settings, unit: UnitEvidence) -> urllib.request.Request:
    """The HTTP request for one chat completion (``/chat/completions`` of the configured base URL)."""
    if not settings.openai_base_url:
        raise GlassboxError("No OpenAI-compatible endpoint is configured (OPENAI_BASE_URL in config.py).")
    url = settings.openai_base_url.rstrip("/") + "/chat/completions"
    body = {"model": settings.openai_model, "temperature": 0, "max_tokens": 80,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": llm_prompt(unit)}]}
    headers = {"Content-Type": "application/json"}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key}"
    return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")


def llm_explanation(settings: Settings, unit: UnitEvidence, timeout: float = 30.0) -> str | None:
    """The LLM's one-sentence explanation, or None when no endpoint is configured."""
    if not settings.openai_base_url:
        return None
    request = llm_request(settings, unit)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            payload = json.loads(response.read().decode())
        return str(payload["choices"][0]["message"]["content"]).strip()
    except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as exc:
        raise GlassboxError(f"The explanation endpoint {settings.openai_base_url} failed: {exc}") from exc
