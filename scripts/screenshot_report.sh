#!/usr/bin/env bash
# Renders an `expc report` page in a headless browser and saves a screenshot, to look at the
# report as a reader will (layout, plots, tables) before calling a change to it done.
#
#   scripts/screenshot_report.sh reports/sweep_lr/report.html [out.png] [width] [height]
#
# Needs chromium (apt-get install -y chromium); the default test suite does not use it.
set -euo pipefail

page=${1:?usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-${page%.html}.screenshot.png}
width=${3:-1280}
height=${4:-2000}

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "error: no chromium here (apt-get install -y chromium)" >&2
  exit 1
fi
[ -f "$page" ] || { echo "error: no such page: $page" >&2; exit 1; }

# A profile of its own, so a browser the user has open is neither used nor disturbed.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: chromium refuses to start as root otherwise (containers, CI).
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${width},${height}" --screenshot="$(realpath -m "$out")" "file://$(realpath "$page")" \
  >/dev/null 2>&1
[ -s "$out" ] || { echo "error: chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
