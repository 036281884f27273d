"""The model registry: load once under concurrency, clear errors, device and dtype rules."""

from __future__ import annotations

import threading

import pytest
import torch

from analysis import models
from analysis.errors import ModelLoadError, PathNotAllowed
from analysis.models import ModelRegistry, resolve_device, resolve_dtype
from analysis.settings import EMBEDDED_LM, Settings, load_settings


def test_device_and_dtype_rules():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # no accelerator on this machine
    assert resolve_dtype(torch.device("cpu")) == torch.float32
    assert resolve_dtype(torch.device("mps")) == torch.float16
    assert resolve_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


def test_ten_threads_load_a_model_once(settings, monkeypatch):
    calls: list[str] = []
    real = models.load_model

    def counting(model_id, s, job=None):
        calls.append(model_id)
        return real(model_id, s, job)

    monkeypatch.setattr(models, "load_model", counting)
    registry = ModelRegistry(settings.replace(models=[EMBEDDED_LM]))
    barrier = threading.Barrier(10)
    got: list[object] = []

    def worker() -> None:
        barrier.wait()
        got.append(registry.get(EMBEDDED_LM))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [EMBEDDED_LM]
    assert len(got) == 10 and all(m is got[0] for m in got)
    assert registry.load_count == {EMBEDDED_LM: 1}


def test_unknown_id_and_bad_directory_are_clear(settings, tmp_path):
    registry = ModelRegistry(settings)
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model"):
        registry.get("no-such-org/no-such-model")
    with pytest.raises(ModelLoadError, match="no config.json"):
        registry.get(str(tmp_path))


def test_local_directory_outside_allowed_roots_is_refused(settings, tmp_path):
    registry = ModelRegistry(settings.replace(local_model_roots=[str(tmp_path / "models")]))
    with pytest.raises(PathNotAllowed, match="must be inside") as refused:  # the one path policy
        registry.get(str(tmp_path))
    assert str(tmp_path / "models") in str(refused.value)


def test_local_snapshot_directory_loads(tmp_path, settings):
    from tests.tiny_models import tiny_model

    lm = tiny_model("gpt2")
    lm.model.save_pretrained(tmp_path / "snap")
    registry = ModelRegistry(settings)
    loaded = registry.get(str(tmp_path / "snap"))
    assert loaded.info.arch == "gpt2" and loaded.info.n_layers == 3
    assert loaded.model.config._attn_implementation == "eager"


def test_trust_remote_code_off_by_default_and_config_file(tmp_path):
    assert Settings().trust_remote_code is False
    cfg = tmp_path / "config.py"
    cfg.write_text("MODELS = ['gpt2']\nDEFAULT_MODEL = 'gpt2'\nMAX_TOKENS = 77\nPORT = 9000\n")
    s = load_settings(cfg, env={"GLASSBOX_DEVICE": "cpu", "GLASSBOX_MAX_TEXT_CHARS": "123"})
    assert (s.models, s.max_tokens, s.port, s.device, s.max_text_chars) == (["gpt2"], 77, 9000, "cpu", 123)
    assert load_settings(tmp_path / "missing.py", env={}).models == Settings().models


def test_eviction_keeps_budget(settings):
    from tests.tiny_models import tiny_model

    registry = ModelRegistry(settings.replace(max_models=2))
    for name in ("gpt2", "llama", "bert"):
        registry.register(tiny_model(name))
        registry._evict(keep=f"tiny-{name}")
    assert [m.model_id for m in registry.loaded()] == ["tiny-llama", "tiny-bert"]
