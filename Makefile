# Each target sets itself up first: a .venv with torch==2.13.0 (CPU build), then vaekit.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: setup browser demo test test-slow bench bench-gpu docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vaekit train --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# Debian's Chromium for the explorer's browser test; where it cannot be installed
# (no root, no apt), that one test is skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "note: chromium could not be installed; the browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	VAEKIT_DATA=$(DATA) $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/binarized_mnist.py --data $(DATA)/binarized-mnist
	$(BIN)/python bench/text.py --data $(DATA)/text
	$(BIN)/python bench/audio.py --data $(DATA)/fsdd
	$(BIN)/python bench/serve_load.py

# Runs on one GPU side by side within a wall-clock budget (bench/budget_runs.py), then the
# k = 5000 NLL of each. By default the top-down hierarchical VampPrior (target <= 83.0 nats) alone,
# for as many epochs as GPU_SECONDS allow (about 0.35 s an epoch on an H200 with the CUDA-graph
# step), then its IWAE-50 fine-tune and encoder refit. Jobs that share the GPU share its time.
# The rows of bench/RESULTS.md name their own jobs: make bench-gpu GPU_JOBS=iwae50-wd GPU_FLAGS=
GPU_JOBS ?= tdvamp-wd-lv
GPU_SECONDS ?= 540
GPU_FLAGS ?= --finetune
GPU_EXTRA ?=
bench-gpu: $(STAMP)
	$(BIN)/python bench/budget_runs.py --data $(DATA)/binarized-mnist --device cuda --train-seconds $(GPU_SECONDS) \
		--jobs $(GPU_JOBS) $(GPU_FLAGS) --extra="$(GPU_EXTRA)" --out bench/out/budget

# docs/cli.md is written from the parser; a test fails when it is out of date
docs: $(STAMP)
	$(BIN)/python -m vaekit.cli.docs docs/cli.md

clean:
	rm -rf $(VENV) runs .pytest_cache
