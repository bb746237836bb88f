"""The classical generator: labelled outputs, honest refusals, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from okaflow import ConfigurationError, GenerationSizeError
from okaflow._case import resolve_image_path
from okaflow.tools.generation import ClassicalGenerator, GenerationRequest
from okaflow.tools.imaging import load_image, render_frame


@pytest.fixture(scope="module")
def images() -> dict[str, object]:
    a, b = (load_image(resolve_image_path(f"pydicom:{n}", Path.cwd())) for n in ("CT_small.dcm", "MR_small.dcm"))
    return {a.id: a, b.id: b}


def test_super_resolution_upscales_and_labels(images: dict[str, object]) -> None:
    ct_id = next(iter(images))
    res = ClassicalGenerator().generate(
        GenerationRequest(task="super_resolution", sources=[ct_id], params={"scale": 4}), images
    )  # type: ignore[arg-type]
    src = render_frame(images[ct_id])  # type: ignore[arg-type]
    out = res.images[0]
    assert out.width >= src.width * 4 and res.label.startswith("DERIVED") and not res.ai_generated
    assert res.derived_from == [ct_id] and res.params_used == {"scale": 4, "method": "lanczos"}
    # The label is burnt into the pixels: a dark band with light text across the top.
    band = np.asarray(out.convert("L"))[: out.height // 20]
    assert band.min() < 40 and band.max() > 215


def test_generative_task_is_unavailable_not_imitated(images: dict[str, object]) -> None:
    res = ClassicalGenerator().generate(GenerationRequest(task="virtual_staining", sources=[]), images)  # type: ignore[arg-type]
    assert res.images == [] and res.unavailable and "generative model" in res.unavailable


def test_bad_requests_are_clear_errors(images: dict[str, object]) -> None:
    gen = ClassicalGenerator()
    with pytest.raises(ConfigurationError, match="unknown source images"):
        gen.generate(GenerationRequest(task="window", sources=["Image/nope"]), images)  # type: ignore[arg-type]
    ct = list(images)[:1]
    for wrong in ({"scale": 9}, {"scale": "four"}):  # a model's mistakes: refused, no crash
        with pytest.raises(ConfigurationError, match="super_resolution request does not fit"):
            gen.generate(GenerationRequest(task="super_resolution", sources=ct, params=wrong), images)  # type: ignore[arg-type]
    # 8× of the 128 px CT is 1024 px, the limit itself; a larger output is refused, not quietly scaled less.
    assert gen.generate(GenerationRequest(task="super_resolution", sources=ct, params={"scale": 8}), images)  # type: ignore[arg-type]
    big = dataclasses.replace(images[ct[0]], pixels=np.zeros((1, 300, 300), dtype=np.float32))  # type: ignore[type-var]
    with pytest.raises(GenerationSizeError, match="over 1024 px a side") as info:
        gen.generate(GenerationRequest(task="super_resolution", sources=ct, params={"scale": 4}), {ct[0]: big})  # type: ignore[arg-type]
    assert info.value.hint == "ask for scale 3 or less"  # what would fit, not a smaller-than-allowed scale
    radiograph = dataclasses.replace(big, pixels=np.zeros((1, 600, 600), dtype=np.float32))  # type: ignore[type-var]
    with pytest.raises(GenerationSizeError, match="not upscaled"):
        gen.generate(GenerationRequest(task="super_resolution", sources=ct, params={"scale": 2}), {ct[0]: radiograph})  # type: ignore[arg-type]
    mr = [i for i in images if i not in ct]
    with pytest.raises(ConfigurationError, match="unknown window preset"):
        gen.generate(GenerationRequest(task="comparison", sources=ct + mr, params={"window": "brain-ish"}), images)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="exactly two"):
        gen.generate(GenerationRequest(task="comparison", sources=list(images)[:1]), images)  # type: ignore[arg-type]


def test_bicubic_baseline_scored_against_a_reference(images: dict[str, object]) -> None:
    from okaflow.tools.generation import SuperResolution

    ct_id = next(iter(images))
    gen = ClassicalGenerator()
    res = gen.generate(SuperResolution(sources=[ct_id], scale=2, method="bicubic", reference=ct_id), images)  # type: ignore[arg-type]
    assert res.params_used["method"] == "bicubic" and "Bicubic interpolation" in res.captions[0]
    (score,) = res.params_used["metrics"]
    # The source upscaled 2× against itself resized back up: close, not identical.
    assert score["reference"] == ct_id and score["reference_resized_from"] == [128, 128]
    assert score["psnr_db"] > 30 and 0.9 < score["ssim"] <= 1.0 and score["data_range"] == 255.0
    lanczos = gen.generate(SuperResolution(sources=[ct_id], scale=2, reference=ct_id), images)  # type: ignore[arg-type]
    assert lanczos.params_used["method"] == "lanczos" and lanczos.params_used["metrics"][0] != score
    with pytest.raises(ConfigurationError, match="method: Input should be 'lanczos' or 'bicubic'"):
        gen.generate(GenerationRequest(task="super_resolution", sources=[ct_id], params={"method": "nearest"}), images)  # type: ignore[arg-type]
