"""Steering: greedy generation with a feature added (scaled) or clamped at its hook, next to the
unsteered continuation. Both run in one batch of two rows per step; the edit touches row 0 only,
so the comparison shares every number except the intervention. Edits go through capture ``edits``.

- add:   x <- x + alpha * W_dec[f]                    (every position)
- clamp: x <- x + (value - a_f(x)) * W_dec[f]          (a_f from sae.encode; sets the feature to value)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.features.sae import LoadedSAE, check_site_editable
from analysis.features.vectors import check_feature
from analysis.models import LoadedModel

MODES = ("add", "clamp")
MAX_NEW = 80


@dataclass
class SteerResult:
    prompt: str
    steered: str
    unsteered: str
    mode: str
    strength: float
    feature: int
    seconds: float
    steered_acts: list[float]  # the feature's activation on each generated token (steered row)
    unsteered_acts: list[float]


def steer_edit(sae: LoadedSAE, feature: int, mode: str, strength: float, rows: int = 1):
    """An edit function for capture: intervene on the first ``rows`` rows of the batch."""
    d = sae.W_dec()[feature]

    def edit(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dvec = d.to(x.device, x.dtype)
        if mode == "add":
            x[:rows] = x[:rows] + strength * dvec
        else:
            acts = sae.encode(x[:rows])[..., feature].to(x.device, x.dtype)
            x[:rows] = x[:rows] + (strength - acts)[..., None] * dvec
        return x

    return edit


def generate_steered(
    lm: LoadedModel,
    sae: LoadedSAE,
    feature: int,
    prompt: str,
    mode: str = "add",
    strength: float = 8.0,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> SteerResult:
    """Greedy (seeded, deterministic) generation, steered vs unsteered, side by side."""
    check_feature(sae, feature)
    check_site_editable(sae.site)
    if mode not in MODES:
        raise InputError(f"Steering mode must be one of {MODES}, got '{mode}'.")
    if not 1 <= max_new_tokens <= MAX_NEW:
        raise InputError(f"New tokens must be in [1, {MAX_NEW}], got {max_new_tokens}.")
    if not -1000 <= strength <= 1000:
        raise InputError(f"Strength must be in [-1000, 1000], got {strength}.")
    if not prompt or not prompt.strip():
        raise InputError("The steering prompt is empty.")
    if len(prompt) > 2000:
        raise InputError("The steering prompt is limited to 2,000 characters.")
    torch.manual_seed(seed)
    start = time.time()
    ids = lm.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    rows = torch.tensor([ids, ids])
    n_prompt = len(ids)
    eos = lm.tokenizer.eos_token_id
    edit = steer_edit(sae, feature, mode, strength)
    acts: list[list[float]] = [[], []]
    done = [False, False]
    for _ in range(max_new_tokens):
        out = capture(lm, rows, [sae.site], edits={sae.site: edit})
        nxt = out.logits[:, -1].argmax(-1).cpu()
        feats = sae.encode(out.acts[sae.site][:, -1])[:, feature]
        for r in range(2):
            if rows.shape[1] > n_prompt:
                acts[r].append(float(feats[r]))
            if done[r]:
                nxt[r] = eos if eos is not None else nxt[r]
            elif eos is not None and int(nxt[r]) == eos:
                done[r] = True
        rows = torch.cat([rows, nxt[:, None]], dim=1)
        if all(done):
            break
    texts = []
    for r in range(2):
        new = rows[r, n_prompt:].tolist()
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
        texts.append(lm.tokenizer.decode(new))
    return SteerResult(prompt=prompt, steered=texts[0], unsteered=texts[1], mode=mode, strength=strength,
                       feature=feature, seconds=time.time() - start, steered_acts=acts[0], unsteered_acts=acts[1])
