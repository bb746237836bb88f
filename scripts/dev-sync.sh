#!/usr/bin/env bash
# Re-link the strict editable install after adding or removing a module (mypy needs strict mode).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict >/dev/null 2>&1 || { echo "dev-sync failed; run without -q to see why" >&2; exit 1; }
