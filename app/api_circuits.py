"""JSON API routes of the Circuits page: attribution, contribution graph, activation patching.

Registered through ``app.api_routes.ROUTE_MODULES``; bad input answers 400 with the bound named (unknown
target token, prompts of different length, threshold or position out of range), unknown models 404.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from analysis.runtime import Runtime
from app.api import _document
from app.api_v1 import MODEL, _args, _clean, param


def register(api: Blueprint, runtime: Runtime) -> None:
    from analysis.circuits import contribution_graph, direct_logit_attribution, patching_grid
    from app.api_v1 import model_and_text

    @api.route("/attribution", methods=["GET", "POST"])
    def attribution():  # type: ignore[no-untyped-def]
        args = _args()
        model, text = model_and_text(runtime, args)
        att = direct_logit_attribution(runtime, model, text, args.get("position"), args.get("target") or "top",
                                       args.get("contrast") or None)
        return jsonify(_clean(att.to_dict()))

    @api.route("/contributions", methods=["GET", "POST"])
    def contributions():  # type: ignore[no-untyped-def]
        args = _args()
        model, text = model_and_text(runtime, args)
        graph = contribution_graph(runtime, model, text, args.get("position"), args.get("threshold", 0.04),
                                   args.get("renormalize", True))
        return jsonify(_clean(graph.to_dict()))

    @api.route("/patching", methods=["GET", "POST"])
    def patching():  # type: ignore[no-untyped-def]
        args = _args()
        model, text = model_and_text(runtime, args)
        grid = patching_grid(runtime, model, text, args.get("corrupted") or None,
                             noise_positions=args.get("noise_positions"), seed=args.get("seed", 0),
                             site=args.get("site") or "resid", target=args.get("target") or "top",
                             contrast=args.get("contrast") or None, positions=args.get("positions"))
        return jsonify(_clean(grid.to_dict()))

    text = param("text", "the prompt", True)
    position = param("position", "position of the prediction (default: the last token)", kind="integer")
    target = param("target", "top | true | a token (e.g. ' Paris') | #id", default="top")
    contrast = param("contrast", "a token to subtract: the logit difference target - contrast")
    _document("/api/v1/attribution", "Direct logit attribution of a prediction to the embedding, every head and "
              "every MLP (final norm frozen; sums to the logit), with the per-source-token strip",
              [MODEL, text, position, target, contrast], tag="Circuits")
    _document("/api/v1/contributions", "LLM-TT contribution graph pruned from a token's output by a threshold",
              [MODEL, text, position, param("threshold", "0.01 to 0.5", kind="number", default=0.04),
               param("renormalize", "renormalize after the threshold (LLM-TT's default)", kind="boolean",
                     default=True)], tag="Circuits")
    _document("/api/v1/patching", "Activation patching grid (layers x positions) of a clean prompt against a corrupted "
              "one (same token count) or ROME's noise on positions",
              [MODEL, text, param("corrupted", "the corrupted prompt"),
               param("noise_positions", "positions to corrupt with 3-sigma embedding noise, e.g. 1-3"),
               param("seed", "noise seed", kind="integer", default=0),
               param("site", "resid | attn | mlp", default="resid"),
               param("positions", "patched positions, e.g. 0-5,9 (default all)"), target, contrast], tag="Circuits")
