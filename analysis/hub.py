"""Is the Hugging Face hub reachable? One answer for every page, in well under 2 s.

Hub lookups (a model id, a pretrained lens, an sae-lens release, a dataset name) fail after 20-30 s of
retries when the machine is offline. Every such lookup first asks :func:`hub_offline`: the offline
switches (``HF_HUB_OFFLINE`` and friends), else one TCP connect to the hub with a short timeout,
remembered for a minute. Callers then answer at once with :func:`offline_message`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 1.0
PROBE_TTL_S = 60.0

_probe: dict[str, float | bool] = {}
_lock = threading.Lock()


def offline_by_env(env: dict[str, str] | None = None) -> bool:
    """True when one of the Hugging Face offline switches is set."""
    env = os.environ if env is None else env
    return any(env.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_FLAGS)


def _hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_offline() -> bool:
    """True when the hub cannot be used now (offline switches, or a failed connect within the last minute)."""
    if offline_by_env():
        return True
    with _lock:
        checked = float(_probe.get("at", 0.0))
        if time.monotonic() - checked < PROBE_TTL_S:
            return bool(_probe["offline"])
    try:
        with socket.create_connection(_hub_host(), timeout=PROBE_TIMEOUT_S):
            offline = False
    except OSError:
        offline = True
    with _lock:
        _probe.update(at=time.monotonic(), offline=offline)
    return offline


def offline_message(what: str, instead: str) -> str:
    """The one message for a hub lookup that cannot happen: what was asked, and what to do instead."""
    why = ("offline mode is on (HF_HUB_OFFLINE)" if offline_by_env()
           else f"the Hugging Face hub ({_hub_host()[0]}) is unreachable from this machine")
    return f"Cannot fetch {what}: {why}. {instead}"
