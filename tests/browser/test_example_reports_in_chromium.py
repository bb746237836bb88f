"""The agent's own reports for every example case, in a real browser: images load, nothing overflows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from okaflow import run

from .test_html_in_chromium import IMAGES_JS, OVERFLOW_JS, _open

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cases"


@pytest.mark.parametrize("name", ["chest-ct-followup", "brain-mri", "obstetric-ultrasound"])
@pytest.mark.parametrize("width", [1024, 390])
def test_example_report_renders_cleanly(browser: Browser, name: str, width: int, tmp_path: Path) -> None:
    result = run(EXAMPLES / name, out=tmp_path / name)
    report = result.report
    expected = sum(1 for b in report.blocks if b.type in {"image", "generated_image", "figure"})
    page, requests, errors = _open(browser, result.report_paths["html"], width)
    try:
        images: list[dict[str, Any]] = page.evaluate(IMAGES_JS)
        assert len(images) >= expected > 0
        assert [i for i in images if not (i["complete"] and i["naturalWidth"] > 0)] == []
        layout: dict[str, Any] = page.evaluate(OVERFLOW_JS)
        assert layout["scrollWidth"] <= layout["clientWidth"], layout
        assert layout["offenders"] == [], layout["offenders"][:10]
        assert requests == [result.report_paths["html"].as_uri()]
        assert errors == []
        assert page.locator(".no-model").is_visible()
    finally:
        page.close()
