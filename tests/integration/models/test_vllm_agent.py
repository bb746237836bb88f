"""The OKA agent end to end on the real vLLM engine with the tiny BLIP-2.

The tiny model's words are noise; what is checked is the structure: every analysis call went
to the server and is recorded with its provenance, each claim cites only evidence that exists
(the step's schema allows nothing else), images over the server's per-prompt limit are sent in
batches, and the report, manifest and event log say which model wrote what.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okaflow import BackendConnectionError, Case, arun, replay, resume, run
from okaflow._case import resolve_image_path
from okaflow._cli import main
from okaflow.model_backend import (
    AsyncOpenAIBackend,
    OpenAIBackend,
    UnderstandRequest,
    UnderstandResult,
    VLLMServer,
)
from okaflow.tools.reporting import HeadingBlock, TextBlock
from okaflow.workflows import Workflow, _builtin

from .conftest import EXAMPLES, VISION_MODEL, Servers, make_server
from .test_vllm_client import run_async

pytestmark = pytest.mark.integration
LIMITS = {"max_steps": 2, "max_claims": 3, "max_claim_chars": 48, "max_tokens": 3000}
BUILT_IN: list[Workflow] = [getattr(_builtin, name) for name in _builtin.__all__]


def two_series_case() -> Case:
    """The chest CT case with a second series (an MR) added: two key images for a one-image server."""
    bundle = EXAMPLES / "chest-ct-followup" / "bundle.json"
    ct, mr = (resolve_image_path(f"pydicom:{name}", EXAMPLES) for name in ("CT_small.dcm", "MR_small.dcm"))
    return Case.from_files(bundle, [ct, mr], task="Report the current studies.", case_id="two-series")


def check_run(
    run_dir: Path, state: dict[str, object], *, batches: int, model_id: str = VISION_MODEL, backend: str = "openai"
) -> None:
    """Every analysis call recorded with provenance, every claim citing existing evidence, the manifest true."""
    evidence_ids = {row["id"] for row in json.loads((run_dir / "evidence.json").read_text())}
    analyses = state["analyses"]
    assert isinstance(analyses, list) and analyses
    for analysis in analyses:
        calls = analysis["batch_provenance"]
        assert len(calls) == batches
        for prov in calls:
            assert prov["backend"] == backend
            assert prov["model_id"] == model_id
            assert prov["usage"]["completion_tokens"] > 0
            assert len(prov["prompt_hash"]) == 64
        assert len({p["prompt_hash"] for p in calls}) == batches, "each batch is its own request"
    claims = state["claims"]
    assert isinstance(claims, list)
    for claim in claims:
        assert set(claim["cites"]) <= evidence_ids
        assert "unknown-citation" not in {f["code"] for f in claim["flags"]}
        assert claim["provenance"]["model_id"] == model_id
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["backend"]["model_id"] == model_id
    if backend == "openai":
        assert manifest["backend"]["base_url"].endswith("/v1")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["node"] for e in events if e["node"] == "analyze"]


def test_agent_batches_images_for_a_one_image_server_and_traces_every_claim(
    vllm_servers: Servers, tmp_path: Path
) -> None:
    backend = OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL, max_images_per_request=1)
    with backend:
        result = run(two_series_case(), backend=backend, out=tmp_path / "run", **LIMITS)
    assert result.status == "completed"
    check_run(result.run_dir, result.state, batches=2)
    report = result.report
    assert (report.backend, report.model_id, report.model_configured) == ("openai", VISION_MODEL, True)
    claim_texts = [b.text for b in report.blocks if isinstance(b, TextBlock) and b.provenance is not None]
    assert sorted(claim_texts) == sorted(c["text"] for c in result.state["claims"])
    # The record replays without the server: the same batched calls, the same report bytes.
    replayed = replay(result.run_dir, case=two_series_case(), out=tmp_path / "replay")
    assert replayed.identical, replayed.differing
    assert replayed.unused_model_calls == 0


def test_async_agent_on_the_engine_runs_an_example_case(vllm_servers: Servers, tmp_path: Path) -> None:
    async def go() -> object:
        async with AsyncOpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL) as backend:
            return await arun(EXAMPLES / "brain-mri", backend=backend, out=tmp_path / "run", **LIMITS)

    result = run_async(go())
    check_run(result.run_dir, result.state, batches=1)  # type: ignore[attr-defined]
    assert (result.run_dir / "report.html").exists()  # type: ignore[attr-defined]


def example_for(workflow: str) -> Path:
    """The example case folder written for ``workflow``."""
    for folder in sorted(EXAMPLES.iterdir()):
        if (folder / "case.json").is_file() and json.loads((folder / "case.json").read_text())["workflow"] == workflow:
            return folder
    raise AssertionError(f"no example case uses the {workflow} workflow")


@pytest.mark.parametrize("workflow", BUILT_IN, ids=lambda w: w.name)
def test_every_built_in_workflow_runs_on_the_engine(vllm_servers: Servers, tmp_path: Path, workflow: Workflow) -> None:
    """ "Point okaflow at a vLLM server and run any workflow": each built-in one, on its example case."""
    with OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL, max_images_per_request=1) as backend:
        result = run(example_for(workflow.name), backend=backend, out=tmp_path / "run", **LIMITS)
    assert result.status == "completed"
    check_run(result.run_dir, result.state, batches=1)
    report = result.report
    assert (report.workflow, report.model_id, report.model_configured) == (workflow.name, VISION_MODEL, True)
    headings = {b.text for b in report.blocks if isinstance(b, HeadingBlock)}
    assert {s.title() for s in workflow.sections} <= headings  # each section has its heading, claims or not
    claims = result.state["claims"]
    assert isinstance(claims, list)
    assert {c["section"] for c in claims} <= set(workflow.sections)


def test_cli_runs_a_case_against_the_engine(vllm_servers: Servers, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "run",
            str(EXAMPLES / "obstetric-ultrasound"),
            "--backend",
            "openai",
            "--model-url",
            vllm_servers.vision.base_url,
            "--model",
            VISION_MODEL,
            "--max-images-per-request",
            "1",
            "--max-steps",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["backend"] == {
        "name": "openai",
        "model_id": VISION_MODEL,
        "is_model": True,
        "base_url": vllm_servers.vision.base_url,
        "max_images_per_request": 1,
    }
    assert main(["model", "check", "--model-url", vllm_servers.vision.base_url, "--model", VISION_MODEL]) == 0
    assert main(["model", "check", "--model-url", vllm_servers.vision.base_url, "--model", "unimedvl"]) == 6


class StopsServerAfterFirstCall:
    """An OpenAI backend whose vLLM server is stopped (for real) as soon as its first answer arrives."""

    def __init__(self, backend: OpenAIBackend, server: VLLMServer) -> None:
        self.backend, self.server = backend, server
        self.name, self.model_id, self.is_model = backend.name, backend.model_id, True
        self.max_images_per_request = backend.max_images_per_request
        self.base_url = backend.base_url

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        result = self.backend.understand(request)
        self.server.stop()
        return result

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        raise NotImplementedError


class Counting:
    """Counts the requests that reach the live backend."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend, self.calls = backend, 0
        self.name, self.model_id, self.is_model = backend.name, backend.model_id, True
        self.max_images_per_request = backend.max_images_per_request

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        self.calls += 1
        return self.backend.understand(request)

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        raise NotImplementedError


def test_model_server_stopped_mid_run_then_the_run_resumes_on_a_live_server(
    vllm_servers: Servers, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    doomed = make_server(tiny_models["blip2-vlm"], VISION_MODEL, tmp_path / "cache", limit_mm_per_prompt={"image": 1})
    case = two_series_case()
    # Step 1 sends two image batches: the first is answered, then the server is gone.
    with (
        doomed,
        OpenAIBackend(base_url=doomed.base_url, model=VISION_MODEL, max_images_per_request=1, max_retries=0) as first,
        pytest.raises(BackendConnectionError),
    ):
        run(case, backend=StopsServerAfterFirstCall(first, doomed), out=tmp_path / "run", **LIMITS)
    assert len((tmp_path / "run" / "model_calls.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "run" / "report.json").exists()

    with OpenAIBackend(base_url=vllm_servers.vision.base_url, model=VISION_MODEL, max_images_per_request=1) as live:
        counting = Counting(live)
        result = resume(tmp_path / "run", backend=counting, case=case)
    assert result.status == "completed"
    calls = (tmp_path / "run" / "model_calls.jsonl").read_text().splitlines()
    # The answered batch was not asked again: every recorded call is distinct, and the live server
    # answered all the others.
    assert len({json.loads(c)["prompt_hash"] for c in calls}) == len(calls)
    assert counting.calls == len(calls) - 1
    check_run(result.run_dir, result.state, batches=2)
