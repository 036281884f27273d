"""JSON API routes of the Neurons page (and the text/lens/feature routes every page's data backs).

Registered through ``app.api_routes.ROUTE_MODULES``. Every route documents itself in the OpenAPI
document (``/api/v1/openapi.json``); ``/api/v1/docs`` renders it offline. Errors are JSON with a 4xx
status naming the problem; unknown models, layers, neurons and features answer 404.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, jsonify, request

from analysis.errors import InputError, NotFound
from analysis.params import REQUIRED, parse_bool, parse_choice, parse_int
from analysis.runtime import Runtime
from app.api import OPENAPI, _document, api_error

DOCS_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Glassbox API v1</title>
<link rel="stylesheet" href="/assets/00-bootstrap.min.css"><style>
body{padding:1.5rem;max-width:1100px} code{color:#b02a37} pre{background:#f6f8fa;padding:.6rem;max-height:22rem;overflow:auto}
.path{font-family:ui-monospace,monospace;font-weight:600}</style></head><body>
<p class="mb-2"><a href="/">&larr; back to Glassbox</a></p>
<h3>Glassbox JSON API <small class="text-muted">v1</small></h3>
<p>OpenAPI document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>. Errors are JSON
<code>{"error": ..., "status": ...}</code> with a 4xx status; unknown models, layers and neurons answer 404.</p>
<div id="routes">Loading…</div>
<script>
function esc(s){return String(s).replace(/[&<>"]/g,function(c){return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c];});}
fetch("/api/v1/openapi.json").then(function(r){return r.json();}).then(function(spec){
  var html=""; var groups={}; var order=["Models","Tokens","Lens","Features","Neurons","Circuits","Docs"];
  Object.keys(spec.paths).forEach(function(path){
    var ops=spec.paths[path]; Object.keys(ops).forEach(function(method){
      var tag=((ops[method].tags||[])[0])||"Other"; (groups[tag]=groups[tag]||[]).push([path,method]);});});
  Object.keys(groups).sort(function(a,b){return (order.indexOf(a)+99)%109-(order.indexOf(b)+99)%109;}).forEach(function(tag){
    html+='<h4 class="mt-4">'+esc(tag)+'</h4>';
    groups[tag].forEach(function(pm,k){
      var path=pm[0], method=pm[1]; var op=spec.paths[path][method]; var id="r"+tag+k+method;
      html+='<div class="card mb-3"><div class="card-body"><div><span class="badge bg-primary me-2">'+method.toUpperCase()+
        '</span><span class="path">'+esc(path)+'</span></div><p class="mb-2">'+esc(op.summary||"")+'</p>';
      var ps=op.parameters||[];
      if(ps.length){html+='<table class="table table-sm"><thead><tr><th>parameter</th><th>type</th><th>required</th><th>description</th></tr></thead><tbody>';
        ps.forEach(function(p){html+='<tr><td><code>'+esc(p.name)+'</code></td><td>'+esc((p.schema||{}).type||"")+
          ((p.schema||{}).default!==undefined?' = '+esc(p.schema.default):'')+'</td><td>'+(p.required?"yes":"")+'</td><td>'+esc(p.description||"")+'</td></tr>';});
        html+='</tbody></table>';}
      if(method==="get" && path!=="/api/v1/docs"){
        html+='<form class="d-flex gap-2 flex-wrap" data-path="'+esc(path)+'" data-out="'+id+'">';
        ps.forEach(function(p){html+='<input class="form-control form-control-sm" style="width:10rem" name="'+esc(p.name)+'" placeholder="'+esc(p.name)+'">';});
        html+='<button class="btn btn-sm btn-outline-primary">Try</button></form><pre id="'+id+'" class="mt-2 d-none"></pre>';}
      html+='</div></div>';});});
  document.getElementById("routes").innerHTML=html;
  document.querySelectorAll("form[data-path]").forEach(function(f){f.addEventListener("submit",function(e){
    e.preventDefault(); var q=new URLSearchParams();
    f.querySelectorAll("input").forEach(function(i){if(i.value!==""){q.set(i.name,i.value);}});
    var out=document.getElementById(f.dataset.out); out.classList.remove("d-none"); out.textContent="…";
    fetch(f.dataset.path+"?"+q.toString()).then(function(r){return r.text().then(function(t){
      try{t=JSON.stringify(JSON.parse(t),null,1);}catch(err){} out.textContent=r.status+" "+t;});});});});
});
</script></body></html>
"""


def param(name: str, description: str, required: bool = False, kind: str = "string",
          default: Any = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


MODEL = param("model", "model id (default: the configured default model)")
INDEX = param("index", "neuron index id (default: the model's biggest complete index)")


def _args() -> dict[str, Any]:
    """Query parameters, merged with a JSON body for POST."""
    args: dict[str, Any] = dict(request.args)
    if request.method == "POST":
        body = request.get_json(silent=True)
        if body is None and request.data:
            raise InputError("The request body is not valid JSON.")
        if isinstance(body, dict):
            args.update(body)
    return args


def _int(args: dict[str, Any], name: str, default: int | None, low: int, high: int | None = None) -> int:
    return parse_int(args.get(name), name, low, high, default=REQUIRED if default is None else default)


def _bool(args: dict[str, Any], name: str) -> bool:
    return parse_bool(args.get(name), name)


def _clean(x: Any) -> Any:
    """NaN/inf -> None so the JSON is strict."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def run_payload(runtime: Runtime, model_id: str, text: str) -> dict[str, Any]:
    """Tokens, top-5 next-token predictions and per-token loss of one text (the Tokens page's own statistics)."""
    from analysis.tokens import next_token_stats

    lm = runtime.model(model_id)
    if not lm.info.is_causal:
        raise InputError(f"Model '{model_id}' is an encoder: it makes no next-token predictions.")
    run = runtime.run(model_id, text)
    stats = next_token_stats(runtime, run)
    predictions = []
    for ids, probs in zip(stats.top_ids.tolist(), stats.top_probs.tolist(), strict=True):
        predictions.append([{"token": t, "token_id": i, "prob": p} for t, i, p in zip(lm.decode(ids), ids, probs, strict=True)])
    loss = [None if v != v else float(v) for v in stats.loss.tolist()]
    valid = [v for v in loss if v is not None]
    return {"model": model_id, "tokens": run.tokens, "token_ids": run.token_ids, "predictions": predictions,
            "loss": loss, "mean_loss": sum(valid) / len(valid) if valid else None}


def model_arg(runtime: Runtime, args: dict[str, Any]) -> str:
    """The request's model (default: the configured one); not configured -> 404."""
    model = str(args.get("model") or runtime.settings.default_model)
    if not runtime.registry.allowed(model):
        raise NotFound(f"Unknown model '{model}' (configured: {', '.join(runtime.settings.models)}).")
    return model


def text_arg(runtime: Runtime, args: dict[str, Any]) -> str:
    text = args.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputError("text is required (a non-empty string).")
    return runtime.check_text(text)


def model_and_text(runtime: Runtime, args: dict[str, Any]) -> tuple[str, str]:
    return model_arg(runtime, args), text_arg(runtime, args)


def register(api: Blueprint, runtime: Runtime) -> None:
    """Add the v1 routes, CORS and the docs page to the API blueprint."""
    import analysis.neurons as neurons

    @api.after_request
    def _cors(response: Response) -> Response:
        origins = runtime.settings.cors_origins or []
        origin = request.headers.get("Origin")
        if origin and ("*" in origins or origin in origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
            response.headers["Vary"] = "Origin"
        return response

    @api.route("/<path:unknown>", methods=["GET", "POST"])
    def unknown_route(unknown: str):  # type: ignore[no-untyped-def]
        return api_error(f"Unknown API route '/api/v1/{unknown}': see /api/v1/docs.", 404)

    @api.route("/docs")
    def docs():  # type: ignore[no-untyped-def]
        return Response(DOCS_HTML, mimetype="text/html")

    @api.route("/run", methods=["GET", "POST"])
    def run():  # type: ignore[no-untyped-def]
        args = _args()
        return jsonify(_clean(run_payload(runtime, model_arg(runtime, args), text_arg(runtime, args))))

    @api.route("/lens", methods=["GET", "POST"])
    def lens():  # type: ignore[no-untyped-def]
        from analysis.lens import LENSES, MAX_WIDTH, RESIDUALS, STATISTICS, lens_grid

        args = _args()
        grid = lens_grid(runtime, model_arg(runtime, args), text_arg(runtime, args),
                         lens=parse_choice(args.get("lens"), "lens", LENSES, default="logit"),
                         statistic=parse_choice(args.get("statistic"), "statistic", STATISTICS, default="kl_final"),
                         start=_int(args, "start", 0, 0), width=_int(args, "width", 64, 1, MAX_WIDTH),
                         residual=parse_choice(args.get("residual"), "residual", RESIDUALS, default="resid"))
        payload = grid.to_dict()
        payload["summary"] = grid.summary()
        return jsonify(_clean(payload))

    @api.route("/indexes")
    def indexes():  # type: ignore[no-untyped-def]
        model = request.args.get("model")
        if model:
            model_arg(runtime, {"model": model})
        return jsonify({"indexes": [{k: v for k, v in m.items() if k != "path"}
                                    for m in neurons.list_indexes(runtime, model)]})

    @api.route("/neuron")
    def neuron():  # type: ignore[no-untyped-def]
        args = _args()
        if args.get("layer") in (None, ""):
            raise InputError("layer is required (an integer, or 'sae').")
        record = neurons.neuron_record(runtime, model_arg(runtime, args), args["layer"], args.get("neuron"), args.get("index"),
                                       n_snippets=_int(args, "snippets", 20, 1, 1000),
                                       n_similar=_int(args, "similar", 10, 0, 100), graph=_bool(args, "graph"),
                                       llm=_bool(args, "llm"))
        return jsonify(_clean(record))

    @api.route("/layer")
    def layer():  # type: ignore[no-untyped-def]
        args = _args()
        if args.get("layer") in (None, ""):
            raise InputError("layer is required (an integer, or 'sae').")
        return jsonify(_clean(neurons.layer_ranking(runtime, model_arg(runtime, args), args["layer"], str(args.get("sort", "max")),
                                                    _int(args, "limit", 50, 1, 5000), _int(args, "offset", 0, 0),
                                                    args.get("index"))))

    @api.route("/search")
    def search():  # type: ignore[no-untyped-def]
        args = _args()
        token = args.get("token")
        if not token:
            raise InputError("token is required (the token text to search, e.g. ' the').")
        return jsonify(_clean(neurons.search_token(runtime, model_arg(runtime, args), token, _int(args, "limit", 50, 1, 1000),
                                                   args.get("index"))))

    @api.route("/compare")
    def compare():  # type: ignore[no-untyped-def]
        args = _args()
        for name in ("layer_a", "neuron_a", "layer_b", "neuron_b"):
            if args.get(name) in (None, ""):
                raise InputError(f"{name} is required.")
        out = neurons.compare(runtime, model_arg(runtime, args), (args["layer_a"], args["neuron_a"]),
                              (args["layer_b"], args["neuron_b"]), args.get("index"))
        out.pop("sample_a")
        out.pop("sample_b")
        return jsonify(_clean(out))

    @api.route("/feature")
    def feature():  # type: ignore[no-untyped-def]
        args = _args()
        model = model_arg(runtime, args)
        if args.get("source") == "index":
            return jsonify(_clean(neurons.feature_record(runtime, model, args.get("feature"), args.get("index"))))
        from analysis.features import feature_record, resolve

        index = _int(args, "feature", None, 0)
        sae_ref = str(args.get("sae") or "embedded")
        _lm, sae = resolve(runtime, model, sae_ref, field=None)
        if index >= sae.d_sae:
            raise NotFound(f"Feature {index} does not exist: the SAE has features 0..{sae.d_sae - 1}.")
        return jsonify(_clean(feature_record(runtime, model, sae_ref, index, n_examples=_int(args, "examples", 10, 1, 100),
                                             llm=_bool(args, "llm"))))

    neuron_params = [MODEL, param("layer", "layer number (or 'sae' for the index's SAE features)", True),
                     param("neuron", "neuron index within the layer", True, "integer"), INDEX,
                     param("snippets", "number of top snippets", kind="integer", default=20),
                     param("similar", "number of similar neurons", kind="integer", default=10),
                     param("graph", "include the Neuron2Graph-style pattern graph (runs pruning forwards)", kind="boolean"),
                     param("llm", "include the LLM explanation when an endpoint is configured", kind="boolean")]
    _document("/api/v1/run", "Run a text: tokens, top-5 next-token predictions, per-token loss (GET or POST JSON)",
              [MODEL, param("text", "the text", True)], tag="Tokens")
    OPENAPI["paths"]["/api/v1/run"]["post"] = {
        "tags": ["Tokens"],
        "summary": "Run a text (JSON body {model, text})",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
            "model": {"type": "string"}, "text": {"type": "string"}}, "required": ["text"]}}}},
        "responses": OPENAPI["paths"]["/api/v1/run"]["get"]["responses"]}
    _document("/api/v1/lens", "Logit/tuned lens grid statistics of a text (layers x positions)",
              [MODEL, param("text", "the text", True), param("lens", "logit | tuned", default="logit"),
               param("statistic", "max_prob | entropy | kl_final | rank | logprob | cross_entropy", default="kl_final"),
               param("start", "first position of the window", kind="integer", default=0),
               param("width", "window width (<= 256)", kind="integer", default=64),
               param("residual", "resid | attn | mlp", default="resid")], tag="Lens")
    _document("/api/v1/indexes", "Neuron indexes in the cache dir", [param("model", "only this model's")], tag="Neurons")
    _document("/api/v1/neuron", "A neuron's record: snippets, quantiles, top tokens, explanation, similar neurons, "
              "logit effects", neuron_params, tag="Neurons")
    _document("/api/v1/layer", "A layer's neurons ranked by max activation, activation range or density",
              [MODEL, param("layer", "layer number or 'sae'", True), INDEX,
               param("sort", "max | range | density | min", default="max"),
               param("limit", "how many", kind="integer", default=50), param("offset", "skip", kind="integer", default=0)],
              tag="Neurons")
    _document("/api/v1/search", "Neurons whose top activations fall on a token",
              [MODEL, param("token", "token text, e.g. ' the'", True), INDEX,
               param("limit", "how many", kind="integer", default=50)], tag="Neurons")
    _document("/api/v1/compare", "Two neurons' symmetric similarities (cosine of activations, Jaccard of top tokens)",
              [MODEL, param("layer_a", "", True), param("neuron_a", "", True, "integer"), param("layer_b", "", True),
               param("neuron_b", "", True, "integer"), INDEX], tag="Neurons")
    _document("/api/v1/feature", "An SAE feature's record (Features page: logit effects, density, top examples)",
              [MODEL, param("feature", "feature index", True, "integer"),
               param("sae", "SAE reference (default 'embedded')", default="embedded"),
               param("source", "'index' to read the feature from a neuron index built with --sae"), INDEX,
               param("examples", "number of top examples", kind="integer", default=10),
               param("llm", "include the LLM explanation when an endpoint is configured", kind="boolean")],
              tag="Features")
    _document("/api/v1/docs", "This API's documentation page (HTML)", tag="Docs")
