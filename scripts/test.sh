#!/usr/bin/env bash
# The whole test suite, from a fresh machine: venv + dev extras, the vLLM engine's own venv
# (.venv-vllm, for the real-engine tests), Orthanc and sekmet-fhir (.venv-fhir) for the PACS/EHR
# tests, Debian Chromium for the browser tests, then ruff, mypy (strict) and pytest. pytest runs in a
# private network namespace (scripts/netns.sh: Orthanc cannot be bound to loopback, so nothing the
# tests start may be reachable from outside). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
scripts/vllm-env.sh >/dev/null
scripts/pacs-env.sh >/dev/null
if ! command -v chromium >/dev/null 2>&1 && [ -z "${OKAFLOW_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "the browser tests need Chromium: sudo apt-get install -y --no-install-recommends chromium" >&2
    exit 1
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p okaflow
scripts/netns.sh .venv/bin/pytest "$@"
