/* Tokens page (/tokens): paints the token strips from the server's values, token clicks,
   keyboard shortcuts. The server sends only per-token values; colours, opacity, the multiply
   control and newline visibility are applied here without a server round trip. */
(function () {
    "use strict";
    var TOOLS = ["predictions", "loss", "attention", "similarity", "sum", "dimension", "edit"];
    var ROPE = ["full", "applied", "not_applied"];
    var POS = [178, 24, 43], NEG = [33, 102, 172];
    var state = { data: null, opacity: 0.8, multiply: 1 };
    window.glassboxTokens = state;

    function fmt(v) {
        if (v === null || v === undefined) { return "—"; }
        var a = Math.abs(v);
        return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? v.toExponential(3) : String(+v.toPrecision(4));
    }

    function colour(v, d, mul, op) {
        if (v === null || v === undefined) { return null; }
        var t, rgb;
        if (d.diverging) {
            if (v >= d.mid) { t = (v - d.mid) / ((d.hi - d.mid) || 1); rgb = POS; }
            else { t = (d.mid - v) / ((d.mid - d.lo) || 1); rgb = NEG; }
        } else {
            t = (v - d.lo) / ((d.hi - d.lo) || 1); rgb = POS;
        }
        t = Math.max(0, Math.min(1, t * mul));
        return [rgb, t * op];
    }

    function paintNow() {
        var d = state.data;
        var chips = document.querySelectorAll("#tokens-strips .gb-tok");
        if (!d) { return chips.length; }
        var mul = d.multiply ? Math.max(1, +state.multiply || 1) : 1;
        var op = state.opacity === null || state.opacity === undefined ? 0.8 : +state.opacity;
        chips.forEach(function (chip) {
            var s = +chip.dataset.s, i = +chip.dataset.i;
            var row = d.values[s] || [];
            var v = i < row.length ? row[i] : null;
            var c = colour(v, d, mul, op);
            if (c) {
                chip.style.backgroundColor = "rgba(" + c[0].join(",") + "," + c[1].toFixed(3) + ")";
                chip.style.color = c[1] > 0.55 ? "white" : "";
            } else {
                chip.style.backgroundColor = "";
                chip.style.color = "";
            }
            chip.title = "#" + i + " · " + d.label + ": " + fmt(v);
            var selected = d.sel && d.sel[0] === s && d.sel[1] === i;
            chip.classList.toggle("gb-tok-sel", !!selected);
        });
        return chips.length;
    }

    // Which controls each tool and each tab read (the rest are hidden, not reset).
    var TOOL_CONTROLS = {
        predictions: [], loss: [], edit: [],
        attention: ["layer", "head", "direction", "rope", "multiply"],
        similarity: ["site", "layer", "sim", "norm"],
        sum: ["site", "layer", "norm"],
        dimension: ["site", "layer", "dim", "norm"]
    };
    var TAB_CONTROLS = {
        token: [], keys: [], generate: ["layer"], attention: ["layer", "head", "rope"],
        hist: ["site", "layer", "norm", "dim"], scatter: ["site", "layer", "norm", "dim", "highlight"]
    };
    var ALL_CONTROLS = ["site", "layer", "head", "direction", "rope", "multiply", "sim", "dim", "norm", "highlight"];

    window.dash_clientside = window.dash_clientside || {};
    window.dash_clientside.tokens = {
        controls: function (tool, tab) {
            var shown = (TOOL_CONTROLS[tool] || []).concat(TAB_CONTROLS[tab] || []);
            ALL_CONTROLS.forEach(function (name) {
                var box = document.getElementById("tokens-ctl-" + name);
                if (box) { box.style.display = shown.indexOf(name) >= 0 ? "" : "none"; }
            });
            return shown.join(",");
        },
        paint: function (data, opacity, multiply) {
            state.data = data; state.opacity = opacity; state.multiply = multiply;
            // The strips may still be rendering: paint now and again after the next frames.
            paintNow();
            window.requestAnimationFrame(function () { paintNow(); window.setTimeout(paintNow, 50); });
            return data ? data.label : "";
        }
    };

    function set(id, props) {
        if (window.dash_clientside && window.dash_clientside.set_props) { window.dash_clientside.set_props(id, props); }
    }

    function select(s, i) {
        set("tokens-selected", { data: { s: s, i: i } });
        if (state.data) { state.data.sel = [s, i]; paintNow(); }  // instant feedback, values follow
    }

    document.addEventListener("click", function (e) {
        var chip = e.target.closest ? e.target.closest("#tokens-strips .gb-tok") : null;
        if (chip) { select(+chip.dataset.s, +chip.dataset.i); }
    });

    function step(id, delta, max) {
        var el = document.getElementById(id);
        if (!el) { return; }
        var v = parseInt(el.value, 10); if (isNaN(v)) { v = 0; }
        v = v + delta;
        if (max !== undefined && max !== null) { v = Math.min(max, v); }
        set(id, { value: Math.max(0, v) });
    }

    function toggle(id) {
        var el = document.getElementById(id);
        if (el) { set(id, { value: !el.checked }); }
    }

    document.addEventListener("keydown", function (e) {
        if (!document.getElementById("tokens-strips")) { return; }
        var tag = (e.target && e.target.tagName) || "";
        if (/^(INPUT|TEXTAREA|SELECT)$/.test(tag) || (e.target && e.target.isContentEditable)) { return; }
        if (e.ctrlKey || e.metaKey || e.altKey) { return; }
        var d = state.data || {};
        var sel = d.sel || [0, 0];
        var handled = true;
        switch (e.key) {
            case "ArrowLeft":
            case "ArrowRight": {
                var n = document.querySelectorAll('#tokens-strips .gb-tok[data-s="' + sel[0] + '"]').length;
                var i = sel[1] + (e.key === "ArrowRight" ? 1 : -1);
                select(sel[0], Math.max(0, Math.min(n - 1, i)));
                break;
            }
            case "ArrowUp": step("tokens-layer", 1, d.n_layers - 1); break;
            case "ArrowDown": step("tokens-layer", -1, d.n_layers - 1); break;
            case "]": step("tokens-head", 1, d.n_heads - 1); break;
            case "[": step("tokens-head", -1, d.n_heads - 1); break;
            case "m": toggle("tokens-mean"); break;
            case "n": toggle("tokens-newlines"); break;
            case "o": set("tokens-direction", { value: d.dir === "to" ? "from" : "to" }); break;
            case "r": set("tokens-rope", { value: ROPE[(ROPE.indexOf(d.rope) + 1) % ROPE.length] }); break;
            default:
                if (/^[1-7]$/.test(e.key)) { set("tokens-tool", { value: TOOLS[+e.key - 1] }); }
                else { handled = false; }
        }
        if (handled) { e.preventDefault(); }
    });
}());
