"""``python -m app.figure``: each page's main figure rendered headlessly, its content reflecting the arguments."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.settings import EMBEDDED_ENCODER, EMBEDDED_LM
from app.figure import main, parse_url

ROOT = Path(__file__).resolve().parents[2]
TEXT = "The quick brown fox jumps over the lazy dog near Paris."


def _run(args: list[str], tmp_path: Path, name: str) -> tuple[int, Path]:
    out = tmp_path / name
    return main([*args, "--out", str(out)]), out


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_tokens_values_svg_names_tokens_and_selection(runtime, smollm2, tmp_path):
    rc, out = _run(["tokens", "--model", EMBEDDED_LM, "--text", TEXT, "--tool", "attention", "--layer", "2",
                    "--head", "1", "--token", "5"], tmp_path, "attn.svg")
    svg = out.read_text()
    assert rc == 0 and svg.startswith("<svg")
    run = runtime.run(EMBEDDED_LM, TEXT)
    assert f"{run.tokens[3].strip()} ·3" in svg  # x labels are the tokens with their positions
    assert "selected token #5" in svg and "Times New Roman" in svg  # paper theme font


def test_tokens_histogram_from_a_page_url(runtime, smollm2, tmp_path):
    url = f"http://127.0.0.1:8050/tokens?model={EMBEDDED_LM}&sample=user&layer=4&t=2&tab=hist"
    rc, out = _run(["--url", url, "--text", TEXT], tmp_path, "hist.svg")
    svg = out.read_text()
    assert rc == 0 and "Histogram · L4" in svg and "token #2" in svg


def test_lens_pdf_and_svg_reflect_statistic(runtime, smollm2, tmp_path):
    rc, pdf = _run(["lens", "--model", EMBEDDED_LM, "--text", TEXT, "--statistic", "entropy",
                    "--width-tokens", "8"], tmp_path, "lens.pdf")
    assert rc == 0 and pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    url = f"http://host/lens?model={EMBEDDED_LM}&sample=user&stat=rank&width=8&view=logit"
    rc, svg = _run(["--url", url, "--text", TEXT], tmp_path, "lens.svg")
    body = svg.read_text()
    assert rc == 0 and "Rank of the true next token" in body and "Logit lens" in body
    assert "quick" in body  # the position labels


def test_png_scale_multiplies_pixels(runtime, smollm2, tmp_path):
    rc, out = _run(["tokens", "--text", TEXT, "--tool", "loss", "--fig-width", "500", "--fig-height", "300",
                    "--scale", "2"], tmp_path, "loss.png")
    assert rc == 0 and _png_size(out.read_bytes()) == (1000, 600)


def test_regions_heatmap(runtime, minilm, tmp_path):
    rc, out = _run(["regions", "--model", EMBEDDED_ENCODER, "--n-per-label", "6", "--layer", "3",
                    "--categories", "prose,code"], tmp_path, "regions.svg")
    svg = out.read_text()
    assert rc == 0 and "Regions of L3 (state 3 of 6" in svg and "prose" in svg and "scripture" not in svg


def test_neurons_logit_effects(runtime, smollm2, tmp_path):
    from analysis.neurons.index import open_index
    from tests.helpers import ensure_index

    ensure_index(runtime)
    index = open_index(runtime, EMBEDDED_LM, None)
    best = index.ranked(3, "max", 1)[0]["unit"]
    rc, out = _run(["neurons", "--layer", "3", "--neuron", str(best)], tmp_path, "neuron.svg")
    assert rc == 0 and f"Layer 3 · neuron {best}" in out.read_text()


def test_features_logit_effects(runtime, smollm2, tmp_path):
    from tests.helpers import make_sae

    sae = make_sae(tmp_path / "sae", seed=3)
    rc, out = _run(["features", "--text", TEXT, "--sae", sae, "--feature", "7"], tmp_path, "feature.svg")
    assert rc == 0 and "Logit effects of feature 7" in out.read_text()


def test_bad_values_are_clear_errors(runtime, smollm2, tmp_path, capsys):
    rc, out = _run(["tokens", "--model", "no/such-model", "--text", TEXT], tmp_path, "x.svg")
    assert rc == 2 and not out.exists() and "not in this dashboard's model list" in capsys.readouterr().err
    rc, _ = _run(["tokens", "--text", TEXT, "--tool", "sum", "--layer", "99"], tmp_path, "x.svg")
    assert rc == 2 and "Layer must be a whole number from 0 to 29; got 99." in capsys.readouterr().err
    rc, _ = _run(["lens", "--text", TEXT, "--statistic", "bogus"], tmp_path, "x.svg")
    assert rc == 2 and "Statistic must be one of max_prob" in capsys.readouterr().err
    rc, _ = _run(["lens", "--text", TEXT], tmp_path, "x.gif")
    assert rc == 2 and "end it in .svg, .pdf or .png" in capsys.readouterr().err
    rc, _ = _run(["--url", "http://h/lens?sample=user"], tmp_path, "x.svg")
    assert rc == 2 and "pass --text" in capsys.readouterr().err


def test_parse_url():
    assert parse_url("http://h:1/neurons?layer=3&neuron=7") == ("neurons", {"layer": "3", "neuron": "7"})
    with pytest.raises(Exception, match="has no figure"):
        parse_url("http://h/home")


@pytest.mark.parametrize("args, message", [
    (["nope"], "invalid choice: 'nope'"),
    (["--url", "http://h/?x=1"], "has no figure"),
    (["lens"], "the following arguments are required: --out"),
])
def test_cli_process_exits_non_zero(args, message):
    """The real command line (no model is loaded for these)."""
    extra = [] if "lens" in args else ["--out", "/tmp/never.svg"]
    proc = subprocess.run([sys.executable, "-m", "app.figure", *args, *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
