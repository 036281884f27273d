"""The open samples of the Tokens page: texts -> runs with the page's capture profile.

The capture sites are chosen once per model and text so that no tool, layer, head or token change
re-runs the model: every layer's residual stream (block input, after attention, block output), attention
and MLP outputs, MLP neurons, and q/k before and after rotary. When that would exceed half of the run
cache (a 7B model at 1,024 tokens), the light profile keeps the residual stream and q/k, and a view that
needs another site kind captures it on first use (one extra forward; ``light`` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis.capture import Run
from analysis.errors import InputError
from analysis.models import LoadedModel
from analysis.runtime import Runtime
from analysis.tokens.views import SITE_KINDS, page_kinds, page_sites

MAX_OPEN_SAMPLES = 4


@dataclass
class OpenSamples:
    """The runs of the open samples (one per sample, in picker order) and what the page shows of them."""

    lm: LoadedModel
    sample_ids: list[str]
    runs: list[Run]
    titles: list[str]
    light: bool  # captured with the light profile (long text on a big model)

    @property
    def lengths(self) -> list[int]:
        return [r.n_tokens for r in self.runs]


def sample_list(samples: str | Sequence[str] | None) -> list[str]:
    """The open sample ids (1..MAX_OPEN_SAMPLES), the bound named when over it."""
    items = [s for s in ([samples] if isinstance(samples, str) else list(samples or [])) if s]
    if not items:
        raise InputError("No sample is open: pick at least one sample (or 'Your own text').", field=None)
    if len(items) > MAX_OPEN_SAMPLES:
        raise InputError(f"{len(items)} samples are open; the limit is {MAX_OPEN_SAMPLES}. Close some.")
    return items


def page_sites_for(runtime: Runtime, lm: LoadedModel, kinds: tuple[str, ...]) -> list[str]:
    return runtime.memo("tokens-sites", 32).get_or_compute((lm.model_id, kinds), lambda: page_sites(runtime, lm, kinds))


def open_samples(runtime: Runtime, model_id: str, samples: str | Sequence[str] | None, user_text: str | None = None,
                 extra_kinds: Iterable[str] = ()) -> OpenSamples:
    """The runs of the open samples (cached: the model runs only for a new model and text)."""
    lm = runtime.model(model_id)
    ids = sample_list(samples)
    texts = [runtime.text(i, user_text) for i in ids]
    titles = [runtime.sample_title(i) for i in ids]
    longest = max(len(runtime.tokens(model_id, t)) for t in texts)
    if longest > runtime.settings.max_tokens:
        raise InputError(f"A sample has {longest:,} tokens; the limit is {runtime.settings.max_tokens:,} "
                         "(max_tokens in config.py). Shorten it.")
    kinds = page_kinds(lm.info, longest, runtime.settings.run_cache_bytes // 2)
    wanted = tuple(sorted(set(kinds) | set(extra_kinds), key=SITE_KINDS.index))
    sites = page_sites_for(runtime, lm, wanted)
    runs = [runtime.run(model_id, t, sites) for t in texts]
    return OpenSamples(lm=lm, sample_ids=ids, runs=runs, titles=titles, light=kinds != SITE_KINDS)
