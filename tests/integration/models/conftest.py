"""The real vLLM engine (CPU build) for the integration tests: tiny seeded models, servers started once.

``scripts/test.sh`` builds the engine's own environment (``scripts/vllm-env.sh``); these fixtures
build the tiny models with that interpreter (cached under ``.cache/tiny-models/<builder hash>``)
and start one server per model for the whole test session, in parallel, on free loopback ports.
A missing engine environment fails the tests with the command that builds it; nothing is skipped.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from okaflow.model_backend import VLLMServer

ROOT = Path(__file__).resolve().parents[3]
BUILDER = ROOT / "tests" / "models" / "build_tiny_models.py"
EXAMPLES = ROOT / "examples" / "cases"
TEXT_MODEL = "tiny-qwen2"
VISION_MODEL = "tiny-blip2"
MAX_MODEL_LEN = 16384


@dataclass(frozen=True)
class Servers:
    text: VLLMServer
    vision: VLLMServer


def vllm_python() -> Path:
    """The vLLM environment's interpreter ($OKAFLOW_VLLM_PYTHON, else .venv-vllm)."""
    path = Path(os.environ.get("OKAFLOW_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not path.exists():
        pytest.fail(f"no vLLM environment at {path}: build it with scripts/vllm-env.sh (scripts/test.sh does)")
    return path


@pytest.fixture(scope="session")
def tiny_models(build_once: Callable[[Path, Path, str], dict[str, Path]]) -> dict[str, Path]:
    """Paths of the tiny Qwen2 and BLIP-2 models, built once per builder version."""
    return build_once(BUILDER, vllm_python(), "tiny-models")


def make_server(model: Path, name: str, cache: Path, **options: object) -> VLLMServer:
    return VLLMServer(
        model=model,
        served_model_name=name,
        python=vllm_python(),
        max_model_len=MAX_MODEL_LEN,
        env={"VLLM_CACHE_ROOT": str(cache)},
        ready_timeout_s=300,
        **options,  # type: ignore[arg-type]
    )


def start_all(servers: list[VLLMServer]) -> None:
    """Start servers in parallel (each takes ~40 s on two cores); stop them all if any fails."""
    errors: list[BaseException] = []

    def start(server: VLLMServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]


@pytest.fixture(scope="session")
def vllm_servers(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A text server (tiny Qwen2, accepts request chat templates) and an image+text server (tiny BLIP-2,
    one image per prompt, vLLM's default refusal of request chat templates)."""
    cache = tmp_path_factory.mktemp("vllm-cache")
    servers = Servers(
        text=make_server(tiny_models["qwen2-text"], TEXT_MODEL, cache / "text", trust_request_chat_template=True),
        vision=make_server(tiny_models["blip2-vlm"], VISION_MODEL, cache / "vision", limit_mm_per_prompt={"image": 1}),
    )
    start_all([servers.text, servers.vision])
    try:
        yield servers
    finally:
        servers.text.stop()
        servers.vision.stop()
        # A test that failed reads better with the engines' last words.
        for s in (servers.text, servers.vision):
            if "Traceback" in s.log_tail():
                sys.stderr.write(f"\n--- {s.name} log tail ---\n{s.log_tail()}\n")
