"""Explanations of a unit: a summary of its top tokens and patterns, and optionally an LLM-written one.

The LLM explanation is off unless ``settings.openai_base_url`` is set: it then POSTs one chat
completion to that OpenAI-compatible endpoint with plain ``urllib`` (no SDK; never required).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from analysis.errors import GlassboxError
from analysis.neurons_store import UnitRecord
from analysis.settings import Settings

SYSTEM_PROMPT = (
    "You explain what a single neuron of a language model responds to. You get text excerpts where it "
    "fires most; the token where it fires is marked with << >> and its activation is given. Answer with "
    "one short sentence (max 25 words) naming the pattern, no preamble."
)


def _show(token: str) -> str:
    return repr(token)[1:-1] if token.strip() != token or not token else token


def summary_text(record: UnitRecord, patterns: list[dict[str, Any]] | None = None) -> str:
    """A plain-language summary of the unit's top tokens, patterns and activation range."""
    what = "feature" if record.kind == "sae" else "neuron"
    parts = []
    tops = record.top_tokens[:5]
    if tops:
        total = sum(t["count"] for t in record.top_tokens) or 1
        listed = ", ".join(f"'{_show(t['token'])}' ({t['count']})" for t in tops)
        parts.append(f"Its {total} highest activations fall mostly on {listed}.")
    if record.snippets:
        best = record.snippets[0]
        i = best.pos - best.start
        if 0 <= i < len(best.tokens):
            before = "".join(best.tokens[max(0, i - 6) : i])
            parts.append(f"Strongest example ({best.act:.2f}): …{_show(before)}[{_show(best.tokens[i])}].")
    if patterns:
        shown = []
        for p in patterns[:3]:
            pieces = [("·" if t == "·" else f"'{_show(t)}'") for t in p["pattern"]]
            shown.append(f"{' '.join(pieces)} ({p['count']}×)")
        parts.append("Context patterns (pruned + ablated): " + "; ".join(shown) + ".")
    q = record.quantiles
    parts.append(f"Median activation {q.get('0.5', 0):.3g}, 99th percentile {q.get('0.99', 0):.3g}, max "
                 f"{record.max_act:.3g}; positive on {record.frac_pos:.0%} of scanned tokens.")
    return f"This {what} (layer {record.layer if record.layer is not None else 'SAE'}, #{record.unit}): " + " ".join(parts)


def llm_prompt(record: UnitRecord, n: int = 8) -> str:
    lines = []
    for s in record.snippets[:n]:
        i = s.pos - s.start
        text = "".join(s.tokens[:i]) + "<<" + (s.tokens[i] if 0 <= i < len(s.tokens) else "") + ">>" + "".join(s.tokens[i + 1 :])
        lines.append(f"activation {s.act:.2f}: {text!r}")
    tops = ", ".join(repr(t["token"]) for t in record.top_tokens[:8])
    return f"Top tokens: {tops}\nExcerpts:\n" + "\n".join(lines)


def llm_request(settings: Settings, record: UnitRecord) -> urllib.request.Request:
    """The HTTP request for one chat completion (``/chat/completions`` of the configured base URL)."""
    if not settings.openai_base_url:
        raise GlassboxError("No OpenAI-compatible endpoint is configured (OPENAI_BASE_URL in config.py).")
    url = settings.openai_base_url.rstrip("/") + "/chat/completions"
    body = {"model": settings.openai_model, "temperature": 0, "max_tokens": 80,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": llm_prompt(record)}]}
    headers = {"Content-Type": "application/json"}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key}"
    return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")


def llm_explanation(settings: Settings, record: UnitRecord, timeout: float = 30.0) -> str | None:
    """The LLM's one-sentence explanation, or None when no endpoint is configured."""
    if not settings.openai_base_url:
        return None
    request = llm_request(settings, record)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            payload = json.loads(response.read().decode())
        return str(payload["choices"][0]["message"]["content"]).strip()
    except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as exc:
        raise GlassboxError(f"The explanation endpoint {settings.openai_base_url} failed: {exc}") from exc
