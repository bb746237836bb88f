#!/usr/bin/env bash
# Create .venv and install okaflow into it. Usage: scripts/bootstrap.sh [EXTRAS]  (default: codecs)
# Idempotent: re-running only installs what changed. Needs python3 (>= 3.11) with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-codecs}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "okaflow needs Python >= 3.11 (found: $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.okaflow-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log=.venv/bootstrap.log
  echo "installing okaflow[$extras] into .venv (log: $log)"
  # strict editable mode: mypy sees the mapped folders (see docs/architecture.md)
  # torch first, pinned to the CPU wheel this kind of machine carries (a bare `torch` requirement
  # pulls a multi-GB CUDA build); override with OKAFLOW_TORCH='torch==X' where another build is wanted.
  torch_spec=""
  case ",$extras," in *,dev,*|*,all,*|*,local,*) torch_spec="${OKAFLOW_TORCH:-torch==2.13.0}" ;; esac
  if ! { .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel &&
         { [ -z "$torch_spec" ] || .venv/bin/python -m pip install -q "$torch_spec"; } &&
         .venv/bin/python -m pip install -q -e ".[$extras]" --config-settings editable_mode=strict; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "installing okaflow[$extras] failed; full log in $log" >&2
    exit 1
  fi
  touch "$stamp"
else
  scripts/dev-sync.sh
fi
