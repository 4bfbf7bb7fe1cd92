#!/usr/bin/env bash
# One-command set-up: a .venv with torch pinned first (the CPU wheel where no GPU is present, the
# CUDA build where one is), then deepspeed and the project with its test extras. Idempotent: a
# stamp of the inputs makes a second call return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
VENV=${EXPC_VENV:-.venv}
PYTHON=${PYTHON:-python3}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  torch_pin="torch==${TORCH_VERSION}"          # CUDA build
else
  torch_pin="torch==${TORCH_VERSION}+cpu"      # fails at once rather than fetch CUDA torch
fi

want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) ${torch_pin}"
stamp="$VENV/.expc-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/expc" ]; then
  exit 0
fi

echo "setting up $VENV ($torch_pin)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
constraints="$VENV/constraints.txt"
echo "$torch_pin" > "$constraints"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install -c "$constraints" "$torch_pin"
# deepspeed's runtime dependency is torch>=2.0: the constraint keeps pip on the pinned build.
pip install -c "$constraints" -e ".[test]"
echo "$want" > "$stamp"
