"""DiffusersGenerator on tiny seeded pipelines: real diffusers code, routing, seeds, limits, labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from okaflow import ConfigurationError, GenerationSizeError, GenerationTaskError, MissingExtraError
from okaflow._case import resolve_image_path
from okaflow._constants import SYNTHETIC_LABEL
from okaflow.tools.generation import (
    GENERATION_TASKS,
    BagelKnobs,
    ClassicalGenerator,
    Counterfactual,
    DiffusersGenerator,
    GenerationLimits,
    GenerationRequest,
    GenerationResult,
    GeneratorChain,
    ModalityTranslation,
    Reconstruction,
    SuperResolution,
    TextToImage,
    VirtualStaining,
)
from okaflow.tools.imaging import MedicalImage, load_image
from okaflow.tools.reporting import label_layout

from .conftest import EXAMPLES, STEPS

pytestmark = pytest.mark.integration

Gens = dict[str, DiffusersGenerator]


@pytest.fixture(scope="module")
def images() -> dict[str, MedicalImage]:
    mr, ct = (load_image(resolve_image_path(f"pydicom:{n}", EXAMPLES)) for n in ("MR_small.dcm", "CT_small.dcm"))
    return {mr.id: mr, ct.id: ct}


def mr_id(images: dict[str, MedicalImage]) -> str:
    return next(i for i, img in images.items() if img.modality.value == "MRI")


def pixels(result: GenerationResult) -> list[bytes]:
    return [img.tobytes() for img in result.images]


def test_each_pipeline_kind_offers_exactly_the_tasks_it_can_do(generators: Gens) -> None:
    offered = {name: sorted(t for t in GENERATION_TASKS if g.supports(t)) for name, g in generators.items()}
    image_tasks = ["counterfactual", "modality_translation", "reconstruction", "virtual_staining"]
    assert offered == {
        "sd": sorted([*image_tasks, "text_to_image"]),  # img2img derived from the text-to-image pipeline
        "sd-upscaler": ["super_resolution"],
        "instruct-pix2pix": image_tasks,
        "ddpm": ["text_to_image"],
    }
    assert generators["sd"].routes == ["image_to_image", "text_to_image"]


@pytest.mark.parametrize(
    ("name", "request_", "pipeline"),
    [
        ("sd", TextToImage(prompt="frontal view", modality="CXR", seed=1), "StableDiffusionPipeline"),
        ("ddpm", TextToImage(modality="CXR", seed=1), "DDPMPipeline"),
        ("sd-upscaler", SuperResolution(sources=["MR"], seed=1), "StableDiffusionUpscalePipeline"),
        ("sd", Counterfactual(sources=["MR"], edit="without the lesion", seed=1), "StableDiffusionImg2ImgPipeline"),
        (
            "sd",
            ModalityTranslation(sources=["MR"], source_domain="T2", target="FLAIR", seed=1),
            "StableDiffusionImg2ImgPipeline",
        ),
        (
            "instruct-pix2pix",
            VirtualStaining(sources=["MR"], target_stain="HER2", seed=1),
            "StableDiffusionInstructPix2PixPipeline",
        ),
        (
            "instruct-pix2pix",
            Reconstruction(sources=["MR"], question="Effusion?", answer="No.", seed=1),
            "StableDiffusionInstructPix2PixPipeline",
        ),
    ],
)
def test_every_task_is_routed_to_the_pipeline_that_can_do_it(
    generators: Gens, images: dict[str, MedicalImage], name: str, request_: object, pipeline: str
) -> None:
    typed = request_.model_copy(update={"sources": [mr_id(images)] if request_.sources else []})  # type: ignore[attr-defined]
    result = generators[name].generate(typed, images)
    assert result.params_used["pipeline"] == pipeline
    assert result.params_used["steps"] == STEPS
    assert (result.backend, result.model_id, result.seed, result.ai_generated) == ("diffusers", name, 1, True)
    assert result.derived_from == typed.sources and len(result.images) == len(result.captions) == 1
    if name == "sd-upscaler":
        assert result.params_used["input_sizes"] == [[64, 64]] and result.params_used["scale"] == 4
        # The 4× output is under the label band, which keeps the whole 256 px picture.
        assert label_layout((256, 256)).canvas == result.images[0].size


def test_the_same_seed_gives_the_same_pixels_and_another_seed_others(
    generators: Gens, images: dict[str, MedicalImage]
) -> None:
    sd = generators["sd"]
    ask = TextToImage(prompt="axial slice", modality="CT", seed=7)
    first, again = sd.generate(ask, images), sd.generate(ask, images)
    assert pixels(first) == pixels(again)
    other = sd.generate(ask.model_copy(update={"seed": 8}), images)
    assert pixels(other) != pixels(first)
    edit = Counterfactual(sources=[mr_id(images)], edit="without the lesion", seed=3)
    assert pixels(sd.generate(edit, images)) == pixels(sd.generate(edit, images))


def test_a_batch_gives_each_image_its_own_seed(generators: Gens, images: dict[str, MedicalImage]) -> None:
    ddpm = generators["ddpm"]
    batch = ddpm.generate(TextToImage(modality="CXR", seed=10, num_images=3), images)
    assert batch.params_used["seeds"] == [10, 11, 12] and len(batch.images) == 3
    assert len(set(pixels(batch))) == 3
    # Image k of a batch is the image of seed + k alone: one generator per image, whatever the batch.
    alone = ddpm.generate(TextToImage(modality="CXR", seed=11), images)
    a, b = (np.asarray(img, dtype=np.int16) for img in (batch.images[1], alone.images[0]))
    assert np.abs(a - b).max() <= 1


def test_unseeded_requests_get_a_recorded_seed_that_reproduces_them(
    generators: Gens, images: dict[str, MedicalImage]
) -> None:
    ddpm = generators["ddpm"]
    first = ddpm.generate(TextToImage(modality="CXR"), images)
    assert isinstance(first.seed, int)
    again = ddpm.generate(TextToImage(modality="CXR", seed=first.seed), images)
    assert pixels(again) == pixels(first)


def test_unsupported_task_pipeline_pairs_are_typed_errors(generators: Gens, images: dict[str, MedicalImage]) -> None:
    with pytest.raises(GenerationTaskError, match=r"StableDiffusionPipeline.*cannot do 'super_resolution'") as info:
        generators["sd"].generate(SuperResolution(sources=[mr_id(images)]), images)
    assert info.value.task == "super_resolution" and "text_to_image" in info.value.supported
    with pytest.raises(GenerationTaskError, match="cannot do 'text_to_image'"):
        generators["sd-upscaler"].generate(TextToImage(prompt="x", modality="CT"), images)
    with pytest.raises(GenerationTaskError, match="cannot do 'virtual_staining'"):
        generators["ddpm"].generate(VirtualStaining(sources=[mr_id(images)], target_stain="IHC"), images)
    with pytest.raises(GenerationTaskError, match="cannot do 'window'"):
        generators["sd"].generate(GenerationRequest(task="window", sources=[mr_id(images)]), images)


def test_parameters_a_pipeline_does_not_take_are_refused_not_dropped(
    generators: Gens, images: dict[str, MedicalImage]
) -> None:
    mr = [mr_id(images)]
    with pytest.raises(ConfigurationError, match="unconditional: it cannot follow a prompt"):
        generators["ddpm"].generate(TextToImage(prompt="a chest X-ray", modality="CXR"), images)
    with pytest.raises(ConfigurationError, match="takes no 'guidance_scale'"):
        generators["ddpm"].generate(TextToImage(modality="CXR", guidance=5.0), images)
    with pytest.raises(ConfigurationError, match="takes no 'guidance_scale'"):  # 0.0 is asked too, not dropped
        generators["ddpm"].generate(TextToImage(modality="CXR", guidance=0.0), images)
    with pytest.raises(ConfigurationError, match="width and its height, or neither"):
        generators["sd"].generate(TextToImage(prompt="x", modality="CT", width=64), images)
    with pytest.raises(ConfigurationError, match="takes no 'strength'"):
        generators["instruct-pix2pix"].generate(Counterfactual(sources=mr, edit="x", strength=0.5), images)
    with pytest.raises(ConfigurationError, match="takes no 'image_guidance_scale'"):
        generators["sd"].generate(Counterfactual(sources=mr, edit="x", image_guidance=1.5), images)
    with pytest.raises(GenerationTaskError, match="method='bicubic' is classical interpolation"):
        generators["sd-upscaler"].generate(SuperResolution(sources=mr, method="bicubic"), images)
    # In a chain the refusal hands the request to the classical generator, which does interpolate.
    chained = GeneratorChain(generators["sd-upscaler"], ClassicalGenerator())
    done = chained.generate(SuperResolution(sources=mr, method="bicubic", scale=2), images)
    assert done.backend == "classical" and "Bicubic interpolation" in done.captions[0]
    with pytest.raises(ConfigurationError, match="upscales 4×, not 2×"):
        generators["sd-upscaler"].generate(SuperResolution(sources=mr, scale=2), images)
    with pytest.raises(ConfigurationError, match="BAGEL knobs"):
        generators["sd"].generate(TextToImage(prompt="x", modality="CT", bagel=BagelKnobs(timestep_shift=3.0)), images)
    with pytest.raises(ConfigurationError, match="unknown source images"):
        generators["sd"].generate(Counterfactual(sources=["Image/nope"], edit="x"), images)
    with pytest.raises(ConfigurationError, match="modality: Input should be"):
        generators["sd"].generate(
            GenerationRequest(task="text_to_image", prompt="x", params={"modality": "XR"}), images
        )


def test_a_pipeline_that_does_not_say_its_size_generates_the_size_asked(
    generators: Gens, images: dict[str, MedicalImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unknown(pipe: object) -> int:
        raise ConfigurationError("does not say the size it generates", hint="pass width= and height= with the request")

    monkeypatch.setattr("okaflow.tools.generation._diffusers._sample_size", unknown)
    done = generators["sd"].generate(TextToImage(prompt="x", modality="CT", width=64, height=48), images)
    assert done.params_used["size"] == [64, 48]
    with pytest.raises(ConfigurationError, match="does not say the size"):
        generators["sd"].generate(TextToImage(prompt="x", modality="CT"), images)


def test_unimedvl_size_limits_unless_the_generator_declares_others(
    generators: Gens, images: dict[str, MedicalImage], tiny_pipelines: dict[str, Path]
) -> None:
    sd = generators["sd"]
    with pytest.raises(GenerationSizeError, match="72×72 cannot be generated: a side is not a multiple of 16") as info:
        sd.generate(TextToImage(prompt="x", modality="CT", width=72, height=72), images)
    assert (info.value.size, info.value.max_side, info.value.multiple) == ((72, 72), 1024, 16)
    with pytest.raises(GenerationSizeError, match="a side is over 1024 px"):
        sd.generate(TextToImage(prompt="x", modality="CT", width=1040, height=64), images)
    ct = next(i for i, img in images.items() if img.modality.value == "CT")  # 128 px → 512 px is fine
    assert generators["sd-upscaler"].generate(SuperResolution(sources=[ct]), images).params_used["input_sizes"] == [
        [128, 128]
    ]
    small = DiffusersGenerator(tiny_pipelines["sd-upscaler"], limits=GenerationLimits(max_side=256), steps=STEPS)
    with pytest.raises(GenerationSizeError, match=r"4× super-resolution of a 128×128 image would be 512×512"):
        small.generate(SuperResolution(sources=[ct]), images)
    declared = DiffusersGenerator(tiny_pipelines["sd"], limits=GenerationLimits(max_side=128, multiple=8), steps=STEPS)
    result = declared.generate(TextToImage(prompt="x", modality="CT", width=72, height=72, seed=0), images)
    assert result.params_used["size"] == [72, 72]


def test_every_output_is_labelled_synthetic_in_pixels_and_metadata(
    generators: Gens, images: dict[str, MedicalImage]
) -> None:
    source = mr_id(images)
    result = generators["sd"].generate(Counterfactual(sources=[source], edit="without the lesion", seed=5), images)
    assert (result.label, result.ai_generated) == (SYNTHETIC_LABEL, True)
    assert result.params_used["seeds"] == [5] and result.derived_from == [source]
    assert "seed 5" in result.captions[0] and source in result.captions[0] and "no explanation" in result.captions[0]
    out = result.images[0]
    layout = label_layout((64, 64))  # the model's 64 px output, under a band that grows the canvas
    assert out.size == layout.canvas
    band = np.asarray(out.convert("RGB"))[: layout.band_height]
    assert (band.sum(axis=2) < 60).mean() > 0.5, "the band is mostly black"
    assert (band.min(axis=2) > 215).any(), "with white text"
    assert ((band[..., 0] > 240) & (band[..., 1] > 180) & (band[..., 2] < 40)).any(), "and the yellow rule"


def test_setup_errors_name_the_fix(
    tmp_path: Path, tiny_pipelines: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="not a diffusers pipeline folder"):
        DiffusersGenerator(tmp_path)
    with pytest.raises(ConfigurationError, match="float16 is not supported on the CPU"):
        DiffusersGenerator(tiny_pipelines["sd"], dtype="float16")
    with pytest.raises(ConfigurationError, match="cpu_offload needs an accelerator"):
        DiffusersGenerator(tiny_pipelines["sd"], cpu_offload=True)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'okaflow\[generation\]'"):
        DiffusersGenerator(tiny_pipelines["sd"])


def test_generated_images_are_pil_images_of_the_pipeline_size(
    generators: Gens, images: dict[str, MedicalImage]
) -> None:
    result = generators["sd"].generate(TextToImage(prompt="x", modality="OCT", width=64, height=48, seed=2), images)
    assert isinstance(result.images[0], Image.Image)
    assert result.params_used["size"] == [64, 48] and result.params_used["prompt"].startswith("optical coherence")


def test_attention_slicing_saves_memory_without_changing_the_image(
    generators: Gens, tiny_pipelines: dict[str, Path], images: dict[str, MedicalImage]
) -> None:
    sliced = DiffusersGenerator(tiny_pipelines["sd"], steps=STEPS, attention_slicing=True)
    kinds = {type(p).__name__ for p in sliced.pipeline.unet.attn_processors.values()}
    assert kinds == {"SlicedAttnProcessor"}
    assert "SlicedAttnProcessor" not in {
        type(p).__name__ for p in generators["sd"].pipeline.unet.attn_processors.values()
    }
    ask = TextToImage(prompt="axial slice", modality="CT", seed=4)
    a, b = (np.asarray(g.generate(ask, images).images[0], dtype=np.int16) for g in (sliced, generators["sd"]))
    assert np.abs(a - b).max() <= 1
