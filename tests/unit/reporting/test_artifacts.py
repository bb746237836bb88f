"""ArtifactStore: content-addressed, deterministic, idempotent, never overwrites, stays in base_dir."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from okaflow._errors import RunDirectoryError
from okaflow.tools.reporting import ArtifactRef, ArtifactStore, png_bytes


def test_put_image_names_file_by_hash_and_records_size(tmp_path: Path, make_xray: Callable[..., Image.Image]) -> None:
    store = ArtifactStore(tmp_path)
    ref = store.put_image(make_xray((120, 80)))
    data = (tmp_path / ref.path).read_bytes()
    assert ref.path == f"artifacts/{ref.sha256}.png"
    assert hashlib.sha256(data).hexdigest() == ref.sha256
    assert (ref.width, ref.height, ref.media_type) == (120, 80, "image/png")
    assert Image.open(io.BytesIO(data)).size == (120, 80)


def test_png_bytes_drop_metadata_so_equal_pixels_give_equal_bytes(
    make_xray: Callable[..., Image.Image],
) -> None:
    plain = make_xray()
    tagged = plain.copy()
    info = PngImagePlugin.PngInfo()
    info.add_text("Timestamp", "2025-01-01T00:00:00")
    buf = io.BytesIO()
    tagged.save(buf, format="PNG", pnginfo=info, dpi=(300, 300))
    reloaded = Image.open(io.BytesIO(buf.getvalue()))
    assert reloaded.info  # the source really carries text and dpi
    assert png_bytes(reloaded) == png_bytes(plain)
    out = Image.open(io.BytesIO(png_bytes(reloaded)))
    assert not any(k in out.info for k in ("Timestamp", "dpi"))


def test_put_image_is_idempotent(tmp_path: Path, make_xray: Callable[..., Image.Image]) -> None:
    store = ArtifactStore(tmp_path)
    first = store.put_image(make_xray())
    second = store.put_image(make_xray())
    assert first == second
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == [f"{first.sha256}.png"]


def test_put_bytes_refuses_to_overwrite_a_different_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"hello", media_type="text/plain", suffix=".txt")
    (tmp_path / ref.path).write_bytes(b"tampered")
    with pytest.raises(RunDirectoryError, match="does not match its name"):
        store.put_bytes(b"hello", media_type="text/plain", suffix="txt")
    assert (tmp_path / ref.path).read_bytes() == b"tampered"


def test_open_verifies_the_hash(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"\x00\x01dicom-ish", media_type="application/dicom", suffix="dcm")
    assert store.open(ref) == b"\x00\x01dicom-ish"
    assert store.path(ref) == tmp_path / "artifacts" / f"{ref.sha256}.dcm"
    store.path(ref).write_bytes(b"changed")
    with pytest.raises(RunDirectoryError, match="does not match its recorded sha256"):
        store.open(ref)


def test_open_names_a_missing_file(tmp_path: Path) -> None:
    ref = ArtifactRef(path="artifacts/" + "0" * 64 + ".png", sha256="0" * 64)
    with pytest.raises(RunDirectoryError, match="is missing"):
        ArtifactStore(tmp_path).open(ref)


@pytest.mark.parametrize("path", ["../secret.png", "/etc/passwd", "artifacts/../../x.png", "a\\..\\b.png"])
def test_refs_cannot_leave_base_dir(tmp_path: Path, path: str) -> None:
    with pytest.raises(RunDirectoryError, match="inside the report's base directory"):
        ArtifactStore(tmp_path).path(ArtifactRef(path=path, sha256="0" * 64))


@pytest.mark.parametrize("suffix", ["", "PNG", "tar.gz", "x" * 11, "../x"])
def test_put_bytes_rejects_odd_suffixes(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        ArtifactStore(tmp_path).put_bytes(b"x", media_type="application/octet-stream", suffix=suffix)


def test_float_images_need_a_window_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        ArtifactStore(tmp_path).put_image(Image.new("F", (4, 4), 1.5))


def test_palette_images_are_stored_as_rgb(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 3)
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * (768 - 12))
    ref = ArtifactStore(tmp_path).put_image(img)
    out = Image.open(tmp_path / ref.path)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (200, 100, 50)


def test_subdir_must_stay_inside_base_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subdir"):
        ArtifactStore(tmp_path, subdir="../elsewhere")
    ref = ArtifactStore(tmp_path, subdir="run/img").put_bytes(b"x", media_type="text/plain", suffix="txt")
    assert ref.path.startswith("run/img/")
