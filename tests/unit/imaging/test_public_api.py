"""The package surface: sorted ``__all__``, everything importable, no global side effects."""

from __future__ import annotations

import importlib

from PIL import Image

import okaflow.tools.imaging as imaging


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_resolves() -> None:
    assert imaging.__all__ == sorted(imaging.__all__, key=_isort_key)
    for name in imaging.__all__:
        assert getattr(imaging, name) is not None


def test_public_functions_are_documented() -> None:
    for name in imaging.__all__:
        obj = getattr(imaging, name)
        if callable(obj) and getattr(obj, "__module__", "").startswith("okaflow"):
            assert obj.__doc__, name


def test_import_leaves_pillow_global_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    importlib.reload(imaging)
    assert before == Image.MAX_IMAGE_PIXELS
