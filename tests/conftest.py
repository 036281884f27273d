"""Shared fixtures: offline hub, a temporary cache dir, one runtime with the embedded models for the session.

Tests never read or write the user's cache (``~/.cache/glassbox``): the session runs on a fresh temporary
cache dir (``GLASSBOX_CACHE_DIR`` too, so CLI subprocesses use it). The one thing borrowed is the user's
converted copy of the embedded SmolLM2, when present, linked read-only (its conversion takes ~30 s); the
last test checks that the user's cache dir is unchanged, file by file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"
TEST_CACHE = Path(os.environ.get("GLASSBOX_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="glassbox-test-cache-"))
os.environ["GLASSBOX_CACHE_DIR"] = str(TEST_CACHE)
CONVERTED = [Path("embedded") / "smollm2-135m-instruct-fp16", Path("embedded") / "gemma-3-270m-fp16"]


def _borrow_converted_model() -> None:
    """Link the user's converted SmolLM2 and Gemma 3 (read-only use) into the test cache, when there."""
    for folder in CONVERTED:
        source, target = USER_CACHE / folder, TEST_CACHE / folder
        if (source / "model.safetensors").is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)


def cache_fingerprint(root: Path) -> dict[str, tuple]:
    """Every file under ``root``: (size, mtime, sha256). Files over 64 MB hash their first and last MB (a
    2 GB activation cache would take minutes to read in full; size and mtime cover the rest)."""
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            if stat.st_size <= 64 << 20:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(-(1 << 20), os.SEEK_END)
                digest.update(handle.read())
        out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, digest.hexdigest())
    return out


_borrow_converted_model()
USER_CACHE_BEFORE = cache_fingerprint(USER_CACHE)

import pytest  # noqa: E402

from analysis.runtime import Runtime, set_runtime  # noqa: E402
from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_GEMMA, EMBEDDED_LM, Settings  # noqa: E402


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    """Tests marked ``last`` run after every other test (the user-cache check)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "last: run after every other test")
    config.addinivalue_line("markers", "ray: starts a local Ray cluster (loopback)")


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    if not os.environ.get("GLASSBOX_TEST_CACHE_DIR"):
        shutil.rmtree(TEST_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(cache_dir=str(TEST_CACHE), max_tokens=1024)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Runtime:
    """The process runtime (also what the Dash callbacks see)."""
    return set_runtime(Runtime(settings))


@pytest.fixture(scope="session")
def smollm2(runtime: Runtime):
    return runtime.model(EMBEDDED_LM)


@pytest.fixture(scope="session")
def gemma(runtime: Runtime):
    """The embedded Gemma 3 270M (converted once from its GGUF, ~1-2 min on 2 cores, then cached)."""
    return runtime.model(EMBEDDED_GEMMA)


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


@pytest.fixture(autouse=True)
def _stop_background_jobs(request):
    """Jobs a test started (a page's auto-started scan, an extraction) stop when the test ends, so they
    never run forwards under the next test's ``forward_count``."""
    yield
    if "runtime" not in request.fixturenames and "dash_app" not in request.fixturenames:
        return
    runtime = request.getfixturevalue("runtime")
    running = [s.key for s in runtime.jobs.statuses() if s.running]
    for key in running:
        runtime.jobs.cancel(key)
    for key in running:
        runtime.jobs.wait(key, timeout=120)
