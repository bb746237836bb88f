"""The in-process transformers backend on the tiny seeded models: the same protocol as the served ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from okaflow import BackendError, BackendImageLimitError, ConfigurationError, MissingExtraError, arun, run
from okaflow.model_backend import TransformersBackend, UnderstandingBackend, json_schema_for, prompt_hash

from .conftest import EXAMPLES
from .test_vllm_agent import LIMITS, check_run, two_series_case
from .test_vllm_client import Finding, ask, png_image, run_async, stop_inside

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def text_backend(tiny_models: dict[str, Path]) -> TransformersBackend:
    return TransformersBackend(tiny_models["qwen2-text"], device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def vision_backend(tiny_models: dict[str, Path]) -> TransformersBackend:
    return TransformersBackend(tiny_models["blip2-vlm"], model_name="tiny-blip2-local")


def test_it_is_an_understanding_backend(text_backend: TransformersBackend) -> None:
    assert isinstance(text_backend, UnderstandingBackend)
    assert (text_backend.name, text_backend.model_id, text_backend.is_model) == ("transformers", "qwen2-text", True)


def test_schema_constrained_decoding_returns_the_pydantic_model(text_backend: TransformersBackend) -> None:
    request = ask(response_schema=json_schema_for(Finding), schema_name="Finding", max_tokens=120)
    result = text_backend.understand(request)
    finding = result.as_model(Finding)
    assert len(finding.note) <= 24
    prov = result.provenance
    assert (prov.backend, prov.model_id, prov.seed) == ("transformers", "qwen2-text", 0)
    assert prov.prompt_hash == prompt_hash(request)
    assert prov.usage["total_tokens"] == prov.usage["prompt_tokens"] + prov.usage["completion_tokens"]


def test_seeded_sampling_repeats_and_greedy_is_deterministic(text_backend: TransformersBackend) -> None:
    def sample(seed: int, temperature: float = 1.0) -> str:
        return text_backend.understand(ask("Anything.", temperature=temperature, seed=seed, max_tokens=16)).text

    assert sample(3) == sample(3)
    assert {sample(s) for s in (4, 5, 6)} - {sample(3)}
    assert sample(1, 0.0) == sample(2, 0.0)  # greedy ignores the seed


def test_image_reaches_the_vision_model_and_the_limit_is_one(
    vision_backend: TransformersBackend, text_backend: TransformersBackend
) -> None:
    # Both tiny models share one tokenizer and template: the difference is BLIP-2's 4 query tokens.
    text_only = text_backend.understand(ask("Describe.", max_tokens=4))
    with_image = vision_backend.understand(ask("Describe.", images=[png_image("ImagingStudy/x")], max_tokens=4))
    assert with_image.provenance.usage["prompt_tokens"] == text_only.provenance.usage["prompt_tokens"] + 4
    with pytest.raises(BackendError, match="needs an image in every prompt"):
        vision_backend.understand(ask("Describe.", max_tokens=4))
    assert vision_backend.max_images_per_request == 1  # BLIP-2 takes one image
    with pytest.raises(BackendImageLimitError):
        vision_backend.understand(ask(images=[png_image("a"), png_image("b")]))


def test_a_text_model_refuses_images(text_backend: TransformersBackend) -> None:
    with pytest.raises(BackendImageLimitError, match="text-only"):
        text_backend.understand(ask(images=[png_image("a")]))


def test_agent_runs_in_process_sync_and_async(vision_backend: TransformersBackend, tmp_path: Path) -> None:
    result = run(two_series_case(), backend=vision_backend, out=tmp_path / "sync", **LIMITS)
    check_run(result.run_dir, result.state, batches=2, model_id="tiny-blip2-local", backend="transformers")
    again = run_async(arun(EXAMPLES / "brain-mri", backend=vision_backend, out=tmp_path / "async", **LIMITS))
    check_run(again.run_dir, again.state, batches=1, model_id="tiny-blip2-local", backend="transformers")


def test_bad_configuration_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="not a model folder"):
        TransformersBackend(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="dtype"):
        TransformersBackend(tmp_path, dtype="float8")
    with pytest.raises(ConfigurationError, match="max_images_per_request"):
        TransformersBackend(tmp_path, max_images_per_request=0)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError) as info:
        TransformersBackend(tmp_path)
    assert info.value.hint == "pip install 'okaflow[local]'"


def test_stop_sequences_end_the_answer_before_them(text_backend: TransformersBackend) -> None:
    whole = text_backend.understand(ask("Write on.", max_tokens=24, temperature=1.0, seed=9)).text
    stop = stop_inside(whole)
    cut = text_backend.understand(ask("Write on.", max_tokens=24, temperature=1.0, seed=9, stop=[stop]))
    assert cut.text == whole[: whole.find(stop)]
