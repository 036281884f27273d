"""``python -m app.figure``: render a page's main figure headlessly (SVG/PDF/PNG, paper theme).

    python -m app.figure lens --model embedded:smollm2-135m-instruct --text "Paris is the capital of" --out grid.pdf
    python -m app.figure tokens --sample prose:... --tool attention --layer 3 --head 2 --token 5 --out attn.svg
    python -m app.figure circuits --text "The Eiffel Tower is in the city of" --target " Paris" --out dla.pdf
    python -m app.figure --url "http://host:8050/lens?model=...&sample=...&stat=entropy" --out fig.png --scale 3

A page URL's query is the page's state (what each page writes into its URL), so ``--url`` reproduces the
view a colleague shared; explicit options override the URL. The figure is built by the page's own
callbacks/components code (see app/figure_pages.py) and rendered by kaleido in the paper theme.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PAGES = ("tokens", "lens", "regions", "features", "neurons", "circuits")
FORMATS = ("svg", "pdf", "png")

# CLI option -> the key the page writes into its URL (so --url and options meet in one state dict).
OPTION_KEYS = {
    "model": "model", "sample": "sample", "text": "text", "layer": "layer", "head": "head", "token": "t",
    "tool": "tool", "site": "site", "statistic": "stat", "lens": "view", "residual": "residual", "start": "start",
    "width_tokens": "width", "source": "source", "dim": "dim", "norm": "norm", "feature": "feature", "sae": "sae",
    "neuron": "neuron", "pooling": "pooling", "method": "method", "components": "k", "grid": "grid",
    "n_per_label": "n", "categories": "cats", "threshold": "threshold", "figure": "figure", "scan": "scan",
    "position": "pos", "target": "target", "contrast": "contrast", "corrupted": "corrupted", "noise": "noise",
    "positions": "positions",
}


class FigureError(Exception):
    """A bad page, URL or option: printed as one line, exit status 2."""


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """``http://host/lens?model=..`` -> ("lens", {"model": ..}); the page is the last path segment."""
    parts = urlsplit(url)
    page = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if page not in PAGES:
        raise FigureError(f"The URL's page '{parts.path or '/'}' has no figure: use a link to /{', /'.join(PAGES)}.")
    return page, dict(parse_qsl(parts.query, keep_blank_values=False))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.figure", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", nargs="?", choices=PAGES, help="the page whose figure to draw (or give --url)")
    p.add_argument("--url", help="a page link; its query is the view's state")
    p.add_argument("--out", required=True, help="output file: .svg, .pdf or .png")
    p.add_argument("--format", choices=FORMATS, help="overrides the --out suffix")
    p.add_argument("--scale", type=float, default=None, help="pixel scale for PNG (default 3; 1 for SVG/PDF)")
    p.add_argument("--fig-width", type=int, help="figure width in px (default: the page's size for this figure)")
    p.add_argument("--fig-height", type=int, help="figure height in px")
    g = p.add_argument_group("input")
    g.add_argument("--model")
    g.add_argument("--text", help="your own text")
    g.add_argument("--sample", help="a sample id of the library (comma-separated for several on Tokens)")
    g = p.add_argument_group("view (what the page's controls set)")
    g.add_argument("--figure", help="which figure of the page: tokens values|hist|scatter, lens grid|summary, "
                                    "regions heatmap|graph, features logits|hist, neurons logits|quantiles|graph, "
                                    "circuits heads|layers|strip|graph|patching")
    g.add_argument("--layer")
    g.add_argument("--head", help="head number or 'mean' (Tokens)")
    g.add_argument("--token", help="selected token position (Tokens)")
    g.add_argument("--tool", help="Tokens: predictions|loss|attention|similarity|sum|dimension")
    g.add_argument("--site", help="Tokens: hook_resid_pre|hook_resid_post|hook_attn_out|hook_mlp_out|mlp.hook_post")
    g.add_argument("--dim")
    g.add_argument("--norm")
    g.add_argument("--statistic", help="Lens: max_prob|entropy|kl_final|rank|logprob|cross_entropy")
    g.add_argument("--lens", help="Lens view: logit|tuned|both|diff")
    g.add_argument("--residual")
    g.add_argument("--start")
    g.add_argument("--width-tokens", help="Lens position window width")
    g.add_argument("--source", help="Lens: tuned lens source; Regions: dataset source")
    g.add_argument("--feature")
    g.add_argument("--sae")
    g.add_argument("--scan")
    g.add_argument("--neuron")
    g.add_argument("--pooling")
    g.add_argument("--method")
    g.add_argument("--components")
    g.add_argument("--grid")
    g.add_argument("--n-per-label")
    g.add_argument("--categories")
    g.add_argument("--threshold", help="Regions: edge threshold; Circuits: contribution-graph threshold")
    g.add_argument("--position", help="Circuits: the prediction's position (default the last token)")
    g.add_argument("--target", help="Circuits: top | true | a token | #id")
    g.add_argument("--contrast", help="Circuits: a token to subtract (logit difference)")
    g.add_argument("--corrupted", help="Circuits patching: the corrupted prompt")
    g.add_argument("--noise", help="Circuits patching: positions to corrupt with noise, e.g. 1-3")
    g.add_argument("--positions", help="Circuits patching: patched positions (default all)")
    return p


def resolve_state(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(page, state): the URL's query first, explicit options on top."""
    page, state = args.page, {}
    if args.url:
        url_page, state = parse_url(args.url)
        if page and page != url_page:
            raise FigureError(f"The page '{page}' does not match the URL's page '{url_page}'.")
        page = url_page
    if not page:
        raise FigureError(f"Name a page ({', '.join(PAGES)}) or give --url.")
    for option, key in OPTION_KEYS.items():
        value = getattr(args, option)
        if value is not None:
            state[key] = value
    if args.text is not None and args.sample is not None:
        raise FigureError("Give --text or --sample, not both.")
    if args.sample is not None:
        state.pop("text", None)
    return page, state


def output_format(args: argparse.Namespace) -> str:
    fmt = args.format or Path(args.out).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise FigureError(f"Cannot tell the format of '{args.out}': end it in .svg, .pdf or .png (or pass --format).")
    return fmt


def render(page: str, state: dict[str, Any], fmt: str, scale: float | None = None, width: int | None = None,
           height: int | None = None) -> bytes:
    """The page's main figure for ``state`` as ``fmt`` bytes (paper theme)."""
    from app.figure_pages import RENDERERS
    from components.figures import figure_bytes

    rendered = RENDERERS[page](state)
    if scale is None:
        scale = 3 if fmt == "png" else 1
    return figure_bytes(rendered.figure, fmt, scale=scale, width=width or rendered.width,
                        height=height or rendered.height)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        page, state = resolve_state(args)
        fmt = output_format(args)
        if args.scale is not None and not 0.1 <= args.scale <= 10:
            raise FigureError(f"--scale must be between 0.1 and 10, got {args.scale}.")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from analysis.errors import GlassboxError

        try:
            data = render(page, state, fmt, args.scale, args.fig_width, args.fig_height)
        except GlassboxError as exc:
            raise FigureError(str(exc)) from exc
    except FigureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {out} ({page}, {fmt}, {len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
