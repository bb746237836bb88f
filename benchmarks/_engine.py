"""A real vLLM engine for the benchmarks: the tests' tiny seeded models, served on loopback.

Needs ``.venv-vllm`` (``scripts/vllm-env.sh``). The models are built with that interpreter into
``.cache/tiny-models/<builder hash>`` (the same cache the integration tests use).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from okaflow.model_backend import VLLMServer

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "tests" / "models" / "build_tiny_models.py"


def vllm_python() -> Path:
    path = Path(os.environ.get("OKAFLOW_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not path.exists():
        sys.exit(f"no vLLM environment at {path}: run scripts/vllm-env.sh first")
    return path


def tiny_model(name: str) -> Path:
    """``qwen2-text`` or ``blip2-vlm``, built once per builder version."""
    out = ROOT / ".cache" / "tiny-models" / hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]
    done = out / "built.json"
    if not done.exists():
        proc = subprocess.run(
            [str(vllm_python()), str(BUILDER), str(out)], capture_output=True, text=True, check=True, timeout=600
        )
        done.write_text(proc.stdout.strip().splitlines()[-1], encoding="utf-8")
    return Path(json.loads(done.read_text(encoding="utf-8"))[name])


def cpu_halves() -> tuple[list[int], list[int]] | None:
    """(the model server's CPUs, the client's) when this process may use two CPUs or more: the first half
    for the server, the rest for the client, as a GPU host and the hosts that send it requests are apart."""
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    return (cpus[:half], cpus[half:]) if half else None


def serve(name: str, served_as: str, **options: object) -> VLLMServer:
    """A started server for tiny model ``name`` (use as a context manager, or call ``stop()``)."""
    return VLLMServer(
        model=tiny_model(name),
        served_model_name=served_as,
        python=vllm_python(),
        max_model_len=16384,
        env={"VLLM_CACHE_ROOT": tempfile.mkdtemp(prefix="okaflow-bench-vllm-")},
        ready_timeout_s=300,
        **options,  # type: ignore[arg-type]
    )
