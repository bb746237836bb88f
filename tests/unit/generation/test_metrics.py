"""PSNR, SSIM and FID against values worked out by hand, with explicit data ranges."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from okaflow import ConfigurationError, MissingWeightsError
from okaflow._case import resolve_image_path
from okaflow.tools.generation import (
    frechet_distance,
    frechet_inception_distance,
    score_against_reference,
    score_image,
)
from okaflow.tools.imaging import load_image

C1 = (0.01 * 255) ** 2  # SSIM's luminance constant for a data range of 255


def grey(value: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("L", size, value)


def test_psnr_of_a_known_error_and_its_dependence_on_the_data_range() -> None:
    # MSE 100 on 8-bit images: 10 log10(255² / 100) dB.
    score = score_image(grey(10), grey(0), data_range=255.0)
    assert score.psnr_db == pytest.approx(10 * math.log10(255**2 / 100))
    assert score.psnr_db == pytest.approx(28.1308, abs=1e-4)
    # The same pixels read as [0, 1] data: the range is part of the number.
    assert score_image(grey(10), grey(0), data_range=1.0).psnr_db == pytest.approx(-20.0)


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)
    assert score_image(grey(110), grey(100), data_range=255.0).ssim == pytest.approx(expected, rel=1e-9)
    same = score_image(grey(77), grey(77), data_range=255.0)
    assert (same.psnr_db, same.ssim, same.as_record()["psnr_db"]) == (None, 1.0, None)


def test_colour_images_are_compared_per_channel_and_sizes_must_match() -> None:
    a = Image.new("RGB", (16, 16), (100, 100, 100))
    b = Image.new("RGB", (16, 16), (110, 110, 110))
    assert score_image(a, b, data_range=255.0).ssim == pytest.approx((2 * 100 * 110 + C1) / (100**2 + 110**2 + C1))
    with pytest.raises(ConfigurationError, match="cannot score"):
        score_image(grey(1, (16, 16)), grey(1, (32, 32)), data_range=255.0)
    with pytest.raises(ConfigurationError, match="data_range must be positive"):
        score_image(a, b, data_range=0)


def test_a_generated_image_is_scored_against_a_case_image_resized_to_it() -> None:
    mr = load_image(resolve_image_path("pydicom:MR_small.dcm", Path.cwd()))
    from okaflow.tools.imaging import render_frame

    exact = render_frame(mr, frame="middle").resize((128, 128), Image.Resampling.LANCZOS)
    (record,), (note,) = score_against_reference([exact], mr.id, {mr.id: mr})
    assert record["psnr_db"] is None and record["ssim"] == 1.0
    assert record["reference_resized_from"] == [64, 64] and record["data_range"] == 255.0
    assert note == f"identical, SSIM 1.000 against {mr.id} (data range 255)"
    with pytest.raises(ConfigurationError, match="not in the case"):
        score_against_reference([exact], "Image/none", {mr.id: mr})


def test_frechet_distance_of_known_gaussians() -> None:
    # N(0, 1) and N(1, 4): (0 - 1)² + 1 + 4 - 2·√4 = 2.
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == pytest.approx(
        2.0
    )
    # Diagonal covariances: the squared mean difference plus Σ (√a - √b)².
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_fid_needs_weights_and_says_which() -> None:
    images = [grey(1), grey(2)]
    with pytest.raises(MissingWeightsError, match="cannot download") as info:
        frechet_inception_distance(images, images, weights=None)
    assert "inception-2015-12-05.pt" in str(info.value.hint)
    with pytest.raises(MissingWeightsError, match="is not a file"):
        frechet_inception_distance(images, images, weights="/nowhere/inception.pt")


class ChannelMeans(torch.nn.Module):
    """A stand-in feature extractor with Inception's TorchScript calling convention (not Inception):
    each image's mean colour, so the expected FID can be worked out from the colours alone."""

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_fid_runs_user_weights_through_the_frechet_distance(tmp_path: Path) -> None:
    weights = tmp_path / "features.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates scripting; Inception's weights come scripted
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(ChannelMeans()).save(str(weights))
    colours_a = [(10, 20, 30), (40, 60, 50), (70, 80, 95), (15, 35, 25), (50, 10, 90)]
    colours_b = [(12, 22, 31), (90, 60, 40), (30, 30, 30), (66, 5, 44), (20, 80, 10)]
    set_a = [Image.new("RGB", (40, 30), c) for c in colours_a]
    set_b = [Image.new("RGB", (40, 30), c) for c in colours_b]
    assert frechet_inception_distance(set_a, set_a, weights=weights) == pytest.approx(0.0, abs=1e-6)
    fa, fb = np.array(colours_a, dtype=float), np.array(colours_b, dtype=float)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    # Tr((S1 S2)^½) from the eigenvalues of S1^½ S2 S1^½ (symmetric), independently of scipy's sqrtm.
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    trace = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)))
    expected = np.sum((fa.mean(0) - fb.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace
    assert frechet_inception_distance(set_a, set_b, weights=weights, batch_size=2) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigurationError, match="at least two images"):
        frechet_inception_distance(set_a[:1], set_b, weights=weights)
