"""Typed generation requests: one envelope, exact round trips, errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okaflow import ConfigurationError, GenerationSizeError, GenerationTaskError
from okaflow._case import resolve_image_path
from okaflow.tools.generation import (
    GENERATION_CALLS,
    GENERATION_TASKS,
    TASK_TYPES,
    BagelKnobs,
    ClassicalGenerator,
    Counterfactual,
    GenerationLimits,
    GenerationRequest,
    GeneratorChain,
    ModalityTranslation,
    Reconstruction,
    RecordingGenerator,
    ReplayGenerator,
    SuperResolution,
    TextToImage,
    VirtualStaining,
    parse_task,
)
from okaflow.tools.imaging import load_image
from okaflow.tools.reporting import ArtifactStore


def test_every_task_a_visual_request_can_name_has_a_typed_request() -> None:
    assert sorted(TASK_TYPES) == sorted(GENERATION_TASKS)


@pytest.mark.parametrize(
    "typed",
    [
        TextToImage(prompt="fundus, drusen", modality="CFP", width=512, height=512, steps=30, guidance=4.0, seed=1),
        TextToImage(modality="CXR", negative_prompt="text, letters", num_images=3),
        SuperResolution(sources=["Image/mr"], scale=4, reference="Image/mr-hr"),
        VirtualStaining(sources=["Image/he"], target_stain="HER2", expression_level="3+", image_guidance=1.5),
        ModalityTranslation(sources=["Image/t2"], source_domain="T2", target="FLAIR", strength=0.6),
        Counterfactual(sources=["Image/cxr"], edit="without the pneumonia", bagel=BagelKnobs(cfg_interval=(0.0, 1.0))),
        Reconstruction(sources=["Image/cxr"], question="Effusion?", answer="Small, left."),
    ],
)
def test_typed_requests_round_trip_through_the_envelope(typed: object) -> None:
    envelope = typed.to_request()  # type: ignore[attr-defined]
    assert isinstance(envelope, GenerationRequest) and envelope.task == typed.task  # type: ignore[attr-defined]
    assert parse_task(envelope) == typed
    # The envelope is what runs record: plain JSON, nothing unset written down.
    again = GenerationRequest.model_validate(json.loads(envelope.model_dump_json()))
    assert parse_task(again) == typed
    assert None not in envelope.params.values()


def test_a_typed_request_and_the_same_request_by_hand_are_one_record() -> None:
    by_hand = GenerationRequest(task="super_resolution", sources=["Image/mr"], params={"scale": 4}, seed=0)
    assert SuperResolution(sources=["Image/mr"], scale=4, seed=0).to_request() == by_hand


def test_prompts_are_composed_from_the_typed_fields_unless_given() -> None:
    assert TextToImage(prompt="drusen", modality="CFP").composed_prompt() == "colour fundus photograph: drusen"
    assert TextToImage(prompt="a chest X-ray, PA", modality="CXR").composed_prompt() == "a chest X-ray, PA"
    assert VirtualStaining(target_stain="Ki-67", expression_level="high").composed_prompt() == (
        "virtual Ki-67 stain of this H&E histopathology image, high expression"
    )
    assert (
        ModalityTranslation(target="FLAIR", source_domain="T2").composed_prompt()
        == "translate this image from T2 to FLAIR"
    )
    assert Counterfactual(edit="without the effusion", prompt="mine").composed_prompt() == "mine"
    assert "answer: Yes" in (Reconstruction(question="Nodule?", answer="Yes").composed_prompt() or "")


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"steps: Input should be greater than or equal to 1"):
        parse_task(GenerationRequest(task="text_to_image", params={"modality": "CT", "steps": 0}))
    with pytest.raises(ConfigurationError, match="colour: Extra inputs are not permitted"):
        parse_task(GenerationRequest(task="counterfactual", params={"edit": "x", "colour": "red"}))
    with pytest.raises(ConfigurationError, match="target_stain: Field required"):
        parse_task(GenerationRequest(task="virtual_staining"))
    with pytest.raises(ConfigurationError, match=r"may not set \['seed'\]"):
        parse_task(GenerationRequest(task="montage", params={"seed": 3}))
    with pytest.raises(ConfigurationError, match="no generation task 'paint'"):
        parse_task(GenerationRequest(task="paint"))


def test_size_limits_and_fitting_sources_onto_the_grid() -> None:
    limits = GenerationLimits()
    limits.check((1024, 512), what="size")
    with pytest.raises(GenerationSizeError, match="not a multiple of 16"):
        limits.check((1000, 512), what="size")
    assert limits.fit_source((64, 64)) == (64, 64)
    assert limits.fit_source((2048, 1536)) == (1024, 768), "large sources are scaled down, aspect kept"
    assert limits.fit_source((100, 70)) == (96, 64), "and rounded to multiples of 16"
    assert limits.fit_source((67, 62), factor=4) == (68, 64), "an SR input only needs 4 × side on the grid"
    with pytest.raises(GenerationSizeError, match="would be 1280×1280"):
        limits.fit_source((320, 320), factor=4)


def test_a_chain_sends_each_task_to_the_first_generator_that_can_do_it(tmp_path: Path) -> None:
    ct = load_image(resolve_image_path("pydicom:CT_small.dcm", Path.cwd()))
    chain = GeneratorChain(ClassicalGenerator())
    result = chain.generate(VirtualStaining(sources=[ct.id], target_stain="IHC"), {ct.id: ct})
    assert result.unavailable and result.backend == "classical"

    class Nothing:
        name, model_id = "nothing", None

        def supports(self, task: str) -> bool:
            return False

    with pytest.raises(GenerationTaskError, match="no generator in nothing can do 'window'"):
        GeneratorChain(Nothing()).generate(GenerationRequest(task="window"), {})  # type: ignore[arg-type]


def test_typed_requests_are_recorded_and_replayed_as_their_envelope(tmp_path: Path) -> None:
    ct = load_image(resolve_image_path("pydicom:CT_small.dcm", Path.cwd()))
    recorder = RecordingGenerator(ClassicalGenerator(), tmp_path / GENERATION_CALLS, ArtifactStore(tmp_path))
    typed = SuperResolution(sources=[ct.id], scale=2, seed=0)
    made = recorder.generate(typed, {ct.id: ct})
    (line,) = (tmp_path / GENERATION_CALLS).read_text().splitlines()
    assert json.loads(line)["request"] == json.loads(typed.to_request().model_dump_json())
    replay = ReplayGenerator(tmp_path, name="classical", model_id=None, tasks=list(GENERATION_TASKS))
    again = replay.generate(typed.to_request(), {})
    assert [i.tobytes() for i in again.images] == [i.tobytes() for i in made.images]
