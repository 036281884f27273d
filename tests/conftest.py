"""Shared fixtures: offline hub, one runtime with the embedded models for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from analysis.runtime import Runtime, set_runtime  # noqa: E402
from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM, Settings  # noqa: E402

TEST_CACHE = os.environ.get("GLASSBOX_TEST_CACHE_DIR", os.path.expanduser("~/.cache/glassbox"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(cache_dir=TEST_CACHE, max_tokens=1024)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Runtime:
    """The process runtime (also what the Dash callbacks see)."""
    return set_runtime(Runtime(settings))


@pytest.fixture(scope="session")
def smollm2(runtime: Runtime):
    return runtime.model(EMBEDDED_LM)


@pytest.fixture(scope="session")
def minilm(runtime: Runtime):
    return runtime.model(EMBEDDED_ENCODER)


@pytest.fixture(scope="session")
def dash_app(runtime: Runtime):
    """The one Dash app of the test session (pages register globally, so build it once)."""
    from app import create_app

    return create_app(runtime=runtime)


@pytest.fixture(scope="session")
def client(dash_app):
    """Flask test client of the app (health check, API, Dash's own routes)."""
    return dash_app.server.test_client()
