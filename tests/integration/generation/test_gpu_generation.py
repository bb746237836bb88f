"""On a CUDA device: an SD 1.5-sized pipeline (random weights, built from config) at 512², half precision.

Skipped where no CUDA device exists (the ``gpu`` marker); run them on a GPU machine with
``pytest -m gpu tests/integration/generation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from okaflow.tools.generation import DiffusersGenerator, GenerationLimits, TextToImage
from okaflow.tools.reporting import label_layout

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.gpu]


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "models"))
    from build_tiny_pipelines import build_sd_sized

    return Path(build_sd_sized(tmp_path_factory.mktemp("sd15"), "sd15"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_512_px_generation_on_the_gpu_is_seeded_and_labelled(sd15: Path, dtype: str) -> None:
    import torch

    gen = DiffusersGenerator(sd15, device="cuda", dtype=dtype, steps=4)
    assert next(gen.pipeline.unet.parameters()).dtype == getattr(torch, dtype)
    assert next(gen.pipeline.unet.parameters()).device.type == "cuda"
    ask = TextToImage(prompt="frontal chest X-ray", modality="CXR", seed=3, num_images=2, width=512, height=512)
    first, again = gen.generate(ask, {}), gen.generate(ask, {})
    assert [i.tobytes() for i in first.images] == [i.tobytes() for i in again.images]
    assert first.images[0].size == label_layout((512, 512)).canvas == (512, 512)  # the band overlays 512 px
    assert first.params_used["dtype"] == dtype and first.params_used["device"] == "cuda"


def test_memory_options_on_the_gpu(sd15: Path) -> None:
    sliced = DiffusersGenerator(sd15, device="cuda", dtype="float16", steps=2, attention_slicing=True)
    offloaded = DiffusersGenerator(sd15, device="cuda", dtype="float16", steps=2, cpu_offload=True)
    ask = TextToImage(prompt="axial CT slice", modality="CT", seed=1)
    for gen in (sliced, offloaded):
        assert gen.generate(ask, {}).images[0].size == (512, 512)


def test_limits_hold_on_the_gpu_too(sd15: Path) -> None:
    gen = DiffusersGenerator(sd15, device="cuda", dtype="float16", steps=2, limits=GenerationLimits(max_side=1024))
    with pytest.raises(Exception, match="cannot be generated"):
        gen.generate(TextToImage(prompt="x", modality="CT", width=1040, height=512), {})
