"""Image-quality metrics for the interleaved tasks: PSNR and SSIM (scikit-image), and FID with user weights.

UniMedVL reports PSNR/SSIM for MRI super-resolution (27.29 dB / 0.890), T2↔FLAIR (25.07 / 0.882) and
H&E→IHC (20.27 / 0.456), and gFID for text-to-image. Every score here states its data range (the span of
possible pixel values: 255 for 8-bit renderings), because PSNR and SSIM mean nothing without one.

FID needs Inception-v3 weights, which okaflow cannot download: pass the TorchScript Inception that
clean-fid and StyleGAN use (``inception-2015-12-05.pt``, called as ``model(x, return_features=True)`` on
0–255 images of 299×299). Without it, :func:`frechet_inception_distance` raises
:class:`~okaflow.MissingWeightsError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from okaflow._errors import ConfigurationError, MissingExtraError, MissingWeightsError
from okaflow.tools.generation._limits import resize_to
from okaflow.tools.imaging import MedicalImage, render_frame

__all__ = ["ImageScore", "frechet_distance", "frechet_inception_distance", "score_against_reference", "score_image"]

_FID_SIDE = 299


@dataclass(frozen=True)
class ImageScore:
    """PSNR (dB; ``None`` when the images are identical: infinite) and SSIM of a generated image.

    Attributes:
        psnr_db: Peak signal-to-noise ratio in decibels. ssim: Structural similarity (-1 to 1).
        data_range: The pixel value span both were computed with. size: ``(width, height)`` compared.
    """

    psnr_db: float | None
    ssim: float
    data_range: float
    size: tuple[int, int]

    def as_record(self) -> dict[str, Any]:
        """The JSON form kept in a result's ``params_used`` and the report."""
        return {
            "psnr_db": None if self.psnr_db is None else round(self.psnr_db, 4),
            "ssim": round(self.ssim, 4),
            "data_range": self.data_range,
            "size": list(self.size),
        }


def _skimage_metrics() -> Any:
    try:
        from skimage import metrics
    except ImportError:
        raise MissingExtraError("metrics", feature="PSNR and SSIM", missing="scikit-image") from None
    return metrics


def _array(img: Image.Image | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    return np.asarray(img, dtype=np.float64)


def score_image(
    generated: Image.Image | np.ndarray[Any, Any],
    reference: Image.Image | np.ndarray[Any, Any],
    *,
    data_range: float,
) -> ImageScore:
    """PSNR and SSIM of ``generated`` against ``reference`` (same size; colour compared per channel).

    Args:
        generated: The generated image, unlabelled (score before the label is burnt in).
        reference: The ground truth, at the generated image's size.
        data_range: The span of possible pixel values (255.0 for 8-bit images, 1.0 for [0, 1] floats).

    Raises:
        ConfigurationError: The sizes or channel counts differ, or ``data_range`` is not positive.
        MissingExtraError: scikit-image is not installed (``okaflow[metrics]``).
    """
    if not data_range > 0:
        raise ConfigurationError(f"data_range must be positive, not {data_range}")
    gen, ref = _array(generated), _array(reference)
    if gen.ndim == 3 and ref.ndim == 2:
        gen = gen.mean(axis=2)  # a grey reference: compare luminance
    elif gen.ndim == 2 and ref.ndim == 3:
        ref = ref.mean(axis=2)
    if gen.shape != ref.shape:
        raise ConfigurationError(
            f"cannot score a {gen.shape} image against a {ref.shape} reference",
            hint="resize the reference to the generated image's size first (score_against_reference does)",
        )
    metrics = _skimage_metrics()
    mse = float(np.mean((gen - ref) ** 2))
    psnr = None if mse == 0 else float(metrics.peak_signal_noise_ratio(ref, gen, data_range=data_range))
    ssim = float(
        metrics.structural_similarity(ref, gen, data_range=data_range, channel_axis=2 if gen.ndim == 3 else None)
    )
    return ImageScore(psnr_db=psnr, ssim=ssim, data_range=data_range, size=(gen.shape[1], gen.shape[0]))


def score_against_reference(
    outputs: Sequence[Image.Image], reference_id: str, images: Mapping[str, MedicalImage]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Score each (unlabelled) generator output against the case image ``reference_id``.

    The reference is rendered to 8 bits like any source (data range 255) and resized to each output's
    size (Lanczos) when the sizes differ; the record says so.

    Returns:
        One record per output (for ``params_used["metrics"]``) and one caption note per output.

    Raises:
        ConfigurationError: ``reference_id`` is not an image of the case.
    """
    if reference_id not in images:
        raise ConfigurationError(
            f"reference image {reference_id!r} is not in the case", hint=f"use one of {sorted(images)}"
        )
    shown = render_frame(images[reference_id], frame="middle")
    records, notes = [], []
    for out in outputs:
        ref = resize_to(shown.convert("RGB") if out.mode == "RGB" else shown, out.size)
        score = score_image(out.convert(ref.mode), ref, data_range=255.0)
        record = {"reference": reference_id, **score.as_record()}
        if shown.size != out.size:
            record["reference_resized_from"] = list(shown.size)
        records.append(record)
        psnr = "identical" if score.psnr_db is None else f"PSNR {score.psnr_db:.2f} dB"
        notes.append(f"{psnr}, SSIM {score.ssim:.3f} against {reference_id} (data range 255)")
    return records, notes


def frechet_distance(
    mu1: np.ndarray[Any, Any], sigma1: np.ndarray[Any, Any], mu2: np.ndarray[Any, Any], sigma2: np.ndarray[Any, Any]
) -> float:
    """The Fréchet distance of two Gaussians: ``|mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½)``."""
    try:
        from scipy import linalg
    except ImportError:
        raise MissingExtraError("metrics", feature="FID", missing="scipy") from None
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # A singular product (few samples): regularise both, as pytorch-fid and clean-fid do.
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_inception_distance(
    generated: Sequence[Image.Image],
    reference: Sequence[Image.Image],
    *,
    weights: str | Path | None,
    device: str = "cpu",
    batch_size: int = 16,
) -> float:
    """FID between two image sets, with Inception-v3 features from weights the user supplies.

    Args:
        generated: The generated images (unlabelled). reference: Real images of the same domain.
        weights: A TorchScript Inception-v3 feature extractor (clean-fid's / StyleGAN's
            ``inception-2015-12-05.pt``): ``model(x, return_features=True)`` on a float NCHW batch of
            0–255 images at 299×299, returning one feature row per image.
        device: Where to run it. batch_size: Images per forward pass.

    Raises:
        MissingWeightsError: ``weights`` is not given or not a file (okaflow downloads nothing).
        ConfigurationError: Fewer than two images in a set (no covariance).
        MissingExtraError: torch (``okaflow[generation]``) or scipy (``okaflow[metrics]``) is missing.
    """
    if weights is None or not Path(weights).is_file():
        raise MissingWeightsError(
            "FID needs Inception-v3 weights, which okaflow cannot download"
            + (f"; {weights} is not a file" if weights is not None else ""),
            hint="pass weights= the TorchScript inception-2015-12-05.pt (as used by clean-fid and StyleGAN)",
        )
    if min(len(generated), len(reference)) < 2:
        raise ConfigurationError("FID needs at least two images in each set (it compares covariances)")
    try:
        import torch
    except ImportError:
        raise MissingExtraError("generation", feature="FID", missing="torch") from None
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript loading, but the standard FID Inception is distributed as TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(weights), map_location=device).eval()  # type: ignore[no-untyped-call]

    def features(pictures: Sequence[Image.Image]) -> np.ndarray[Any, Any]:
        rows = []
        for start in range(0, len(pictures), batch_size):
            batch = [
                np.asarray(p.convert("RGB").resize((_FID_SIDE, _FID_SIDE), Image.Resampling.BICUBIC))
                for p in pictures[start : start + batch_size]
            ]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().to(device)
            with torch.no_grad():
                rows.append(model(x, return_features=True).double().cpu().numpy())
        return np.concatenate(rows)

    a, b = features(generated), features(reference)
    value = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    return max(0.0, value) if math.isfinite(value) else value
