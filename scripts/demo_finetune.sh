#!/usr/bin/env bash
# The fine-tuning demo: build specs/finetune_lora.jsonnet (LoRA on the committed tiny Llama-shaped
# base, assets/tiny-llama, over the committed instruction rows; every file pinned by sha256),
# show two training examples exactly as the trainer tokenizes them, train on 2 CPU processes
# (ZeRO stage 2), then show the export it leaves in runs/<digest>/export/. Offline throughout.
# `make demo-finetune` runs the set-up first; DEMO_ARGS=--rerun trains again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EXPC_VENV:-.venv}/bin
export HF_HUB_OFFLINE=1

manifest=$("$BIN/expc" build specs/finetune_lora.jsonnet)
echo "built $manifest"
"$BIN/expc" show specs/finetune_lora.jsonnet --samples 2
echo
"$BIN/expc" run "$manifest" ${DEMO_ARGS:-}
"$BIN/expc" export "$manifest"
