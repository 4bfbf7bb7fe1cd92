#!/usr/bin/env bash
# The demo: build specs/tiny.jsonnet into its manifest and train it on 2 CPU processes (a small
# byte-level GPT on the Python standard library's own source), then show the sample it writes.
# `make demo` runs the set-up first. Running it again reports the completed run; pass
# DEMO_ARGS=--rerun to train again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EXPC_VENV:-.venv}/bin

manifest=$("$BIN/expc" build specs/tiny.jsonnet)
echo "built $manifest"
"$BIN/expc" run "$manifest" ${DEMO_ARGS:-}
