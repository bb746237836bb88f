"""Content-addressed storage for the images and files a report refers to.

Every artifact is a file named ``<sha256>.<suffix>`` under ``<base_dir>/<subdir>``. The name *is* the
content, so storing the same image twice is free, a run can be replayed and compared byte for byte,
and a file that no longer matches its name is detectably corrupt.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from PIL import Image

from okaflow._errors import RunDirectoryError
from okaflow._files import write_new
from okaflow._png import png_bytes
from okaflow.tools.reporting._model import ArtifactRef

__all__ = ["ArtifactStore", "png_bytes"]

_SUFFIX = re.compile(r"^[a-z0-9]{1,10}$")


class ArtifactStore:
    """Stores report artifacts by content hash below a base directory.

    Refs hold POSIX paths relative to ``base_dir`` (``artifacts/<sha256>.png``), so a run directory can
    be moved or zipped and its report still resolves.

    Args:
        base_dir: The report's base directory (usually the run directory).
        subdir: Folder under ``base_dir`` that holds the artifact files.

    Example:
        >>> store = ArtifactStore(run_dir)  # doctest: +SKIP
        >>> ref = store.put_image(img)  # doctest: +SKIP
        >>> ref.path  # doctest: +SKIP
        'artifacts/3f2a…c9.png'
    """

    def __init__(self, base_dir: Path, subdir: str = "artifacts") -> None:
        sub = PurePosixPath(subdir)
        if sub.is_absolute() or ".." in sub.parts or not sub.parts:
            raise ValueError(f"subdir must be a relative folder name inside base_dir, got {subdir!r}")
        self.base_dir = Path(base_dir)
        self.subdir = sub.as_posix()

    def put_image(self, img: Image.Image) -> ArtifactRef:
        """Store an image as PNG and return its ref (with width and height).

        Args:
            img: The image; see :func:`png_bytes` for the modes accepted.

        Returns:
            The ref of ``<sha256>.png``; the same pixels always give the same ref.
        """
        ref = self.put_bytes(png_bytes(img), media_type="image/png", suffix="png")
        return ref.model_copy(update={"width": img.width, "height": img.height})

    def put_bytes(self, data: bytes, media_type: str, suffix: str) -> ArtifactRef:
        """Store arbitrary bytes under their hash.

        Args:
            data: The file content.
            media_type: Its MIME type, kept in the ref (e.g. ``"application/dicom"``).
            suffix: File name extension without or with the dot (``"dcm"``, ``".json"``).

        Returns:
            The ref; storing the same bytes again returns an equal ref and writes nothing.

        Raises:
            ValueError: ``suffix`` is not 1-10 lowercase letters or digits.
            RunDirectoryError: A file of that name exists with other content (a corrupt store).
        """
        suffix = suffix.removeprefix(".")
        if not _SUFFIX.match(suffix):
            raise ValueError(f"artifact suffix must be 1-10 lowercase letters or digits, got {suffix!r}")
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{self.subdir}/{digest}.{suffix}"
        target = self.base_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        created = not target.exists() and write_new(target, data)
        # A file that was there already (or that another writer made meanwhile) must hold exactly these bytes.
        if not created and target.read_bytes() != data:
            raise RunDirectoryError(
                f"artifact {target} exists with content that does not match its name; "
                "the run directory is corrupt — delete that file and run again"
            )
        return ArtifactRef(path=rel, sha256=digest, media_type=media_type)

    def path(self, ref: ArtifactRef) -> Path:
        """The file a ref points at, refusing refs that leave ``base_dir``.

        Raises:
            RunDirectoryError: The ref's path is absolute or climbs out of ``base_dir`` (a ref read
                from an untrusted report must not make us read ``/etc/passwd``).
        """
        return resolve_ref(self.base_dir, ref)

    def open(self, ref: ArtifactRef) -> bytes:
        """Read an artifact's bytes and check them against the ref's hash.

        Raises:
            RunDirectoryError: The file is missing, outside ``base_dir``, or its hash differs.
        """
        return read_ref(self.base_dir, ref)


def resolve_ref(base_dir: Path, ref: ArtifactRef) -> Path:
    """``base_dir / ref.path``, refusing paths that are absolute or escape ``base_dir``."""
    rel = PurePosixPath(ref.path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\\" in ref.path:
        raise RunDirectoryError(f"artifact path {ref.path!r} is not a relative path inside the report's base directory")
    return Path(base_dir) / Path(*rel.parts)


def read_ref(base_dir: Path, ref: ArtifactRef) -> bytes:
    """Read the artifact a ref names and verify its SHA-256.

    Raises:
        RunDirectoryError: Missing file, a path outside ``base_dir``, or a hash mismatch.
    """
    path = resolve_ref(base_dir, ref)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunDirectoryError(f"artifact {path} is missing; pass the base_dir the report was written with") from None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise RunDirectoryError(f"artifact {path} does not match its recorded sha256 {ref.sha256[:12]}…")
    return data
