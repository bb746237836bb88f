#!/usr/bin/env bash
# Run a sample case through the OKA agent on the embedded defaults (no model) to an interleaved report.
# Usage: scripts/demo.sh [CASE_DIR] [extra okaflow run options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh codecs
case_dir="${1:-examples/cases/chest-ct-followup}"
shift || true
.venv/bin/okaflow run "$case_dir" --out runs/demo --force "$@"
echo "open runs/demo/report.html in a browser"
