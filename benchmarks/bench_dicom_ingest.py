"""okaflow's DICOM load + render path against a hand-written pydicom + numpy baseline.

Run: ``python benchmarks/bench_dicom_ingest.py [--repeat N]``. Not a timed test: it prints, per file,
the median time of each path and the ratio ``baseline / okaflow`` (above 1: okaflow is faster;
the target is >= 0.9), then the same over all files.

The baseline does the work a careful script would do for one model input: ``dcmread``,
``pixel_array`` (which decodes every frame, as okaflow does), the modality LUT, a window to uint8
(header window, else the CT soft-tissue preset, else the 0.5-99.5 percentile range), MONOCHROME1
inversion, palette colour, then a bicubic resize to the size okaflow's policy picks. okaflow does
the same plus what the baseline skips: content sniffing, the pixel-budget guard, header facts,
modality recognition, warning capture and padding to the policy's floor.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut, apply_modality_lut

from okaflow.tools.imaging import load_image, policy_size, render_for_model

FILES = [
    "CT_small.dcm",
    "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "examples_overlay.dcm",
    "JPEG2000.dcm",
    "examples_rgb_color.dcm",
    "examples_palette.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",
]


def _files() -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_testdata_file warns for files it would download
        for name in FILES:
            path = get_testdata_file(name)
            if path is not None:
                found.append(Path(path))
    return found


def baseline(path: Path) -> Image.Image:
    """What a script would write with pydicom, numpy and Pillow alone."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if frames > 1:
        arr = arr[frames // 2]
    if arr.ndim == 3:
        u8 = arr.astype(np.uint8) if arr.dtype == np.uint8 else (arr / 256).astype(np.uint8)
    else:
        values = apply_modality_lut(arr, ds)
        if "WindowCenter" in ds:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            center = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
            width = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
            lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        elif ds.Modality == "CT":
            lo, hi = 40 - 200, 40 + 200
        else:
            lo, hi = np.percentile(values, [0.5, 99.5])
        u8 = (np.clip((values - lo) / max(hi - lo, 1e-3), 0, 1) * 255 + 0.5).astype(np.uint8)
        if photometric == "MONOCHROME1":
            u8 = 255 - u8
    img = Image.fromarray(u8)
    (w, h), _ = policy_size(img.width, img.height)
    return img.resize((w, h), Image.Resampling.BICUBIC)


def okaflow_path(path: Path) -> Image.Image:
    return render_for_model(load_image(path))


def _median_time(func: Callable[[Path], Image.Image], path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per file and path (median kept)")
    args = parser.parse_args()
    files = _files()
    print(f"pydicom {pydicom.__version__}, numpy {np.__version__}, {len(files)} files, median of {args.repeat}")
    print(f"{'file':34s} {'baseline ms':>12s} {'okaflow ms':>11s} {'ratio':>7s}")
    total_base = total_oka = 0.0
    for path in files:
        for func in (baseline, okaflow_path):  # warm caches and lazy imports
            func(path)
        # Interleave the two paths so drift (CPU frequency, other load) hits both alike.
        base_times, oka_times = [], []
        for _ in range(3):
            base_times.append(_median_time(baseline, path, args.repeat))
            oka_times.append(_median_time(okaflow_path, path, args.repeat))
        base, oka = min(base_times), min(oka_times)
        total_base += base
        total_oka += oka
        print(f"{path.name:34s} {base * 1e3:12.2f} {oka * 1e3:11.2f} {base / oka:7.2f}")
    print(f"{'TOTAL':34s} {total_base * 1e3:12.2f} {total_oka * 1e3:11.2f} {total_base / total_oka:7.2f}")


if __name__ == "__main__":
    main()
