# The two commands the README gives. Both do the whole set-up first (scripts/setup.sh is
# idempotent and returns at once when nothing changed).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-finetune test test-all bench check

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

demo-finetune: setup
	@scripts/demo_finetune.sh

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: setup
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

check: setup
	$(BIN)/expc check
