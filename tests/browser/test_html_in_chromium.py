"""The HTML report in a real browser: images decode, nothing overflows, nothing is fetched or run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from okaflow._constants import DERIVED_LABEL, SYNTHETIC_LABEL
from okaflow._types import Evidence, Provenance
from okaflow.tools.fhir import ObservationFact
from okaflow.tools.reporting import (
    ArtifactStore,
    CitationsBlock,
    FigureBlock,
    GeneratedImageBlock,
    HeadingBlock,
    ImageBlock,
    NoticeBlock,
    Report,
    TableBlock,
    TextBlock,
    VerificationFlag,
    plot_observation_panel,
    plot_observation_trend,
    stamp_label,
    write_report,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

LONG_URL = "https://example.org/" + "a-very-long-unbroken-path-segment" * 12 + "?q=" + "x" * 200
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 6
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
CREATED = "2025-01-02T03:04:05+00:00"

# Runs in the page: every element that sticks out of the viewport, unless a horizontally
# scrolling (or clipping) ancestor that itself fits the viewport contains it.
OVERFLOW_JS = """
() => {
  const vw = document.documentElement.clientWidth;
  const fits = (r) => r.left >= -0.5 && r.right <= vw + 0.5;
  const clippedByFittingScroller = (el) => {
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (["auto", "scroll", "hidden", "clip"].includes(ox)) return fits(a.getBoundingClientRect());
    }
    return false;
  };
  const offenders = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || fits(r) || clippedByFittingScroller(el)) continue;
    const where = `${Math.round(r.left)}..${Math.round(r.right)}`;
    offenders.push(`${el.tagName.toLowerCase()}.${el.className} ${where}`);
  }
  const scrollers = [...document.querySelectorAll(".table-wrap")].map(
    (w) => [w.scrollWidth, w.clientWidth]);
  return {vw, scrollWidth: document.documentElement.scrollWidth,
          clientWidth: document.documentElement.clientWidth, offenders, scrollers};
}
"""

IMAGES_JS = """
() => [...document.images].map((i) => ({
  alt: i.alt.slice(0, 40), complete: i.complete, naturalWidth: i.naturalWidth,
  shownWidth: i.getBoundingClientRect().width, src: i.src.slice(0, 22)}))
"""


def _grey(size: tuple[int, int], seed: int) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 90 * np.sin(xx / max(w, 1) * 6.3) * np.cos(yy / max(h, 1) * 6.3)
    noise = np.random.default_rng(seed).normal(0, 10, (h, w))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _series(name: str, unit: str, values: list[float], low: float, high: float) -> list[ObservationFact]:
    dates = ["2024-01-05", "2024-02-10T08:30:00Z", "2024-03-01", "2024-04", "2024-05-20T10:00:00+02:00"]
    return [
        ObservationFact(
            id=f"Observation/{name.lower()}-{i}",
            text=name,
            value=v,
            unit=unit,
            effective=d,
            reference_low=low,
            reference_high=high,
        )
        for i, (v, d) in enumerate(zip(values, dates, strict=False))
    ]


def _rich_report(base_dir: Path, *, model_configured: bool) -> Report:
    store = ArtifactStore(base_dir)
    prov = Provenance(backend="vllm-omni", model_id="UniMedVL-14B", prompt_hash="f" * 64, seed=1234, created=CREATED)
    classical = Provenance(backend="okaflow", prompt_hash=None, seed=None, is_model=False, created=CREATED)
    hb = _series("Haemoglobin", "g/dL", [13.4, 11.1, 10.2, 12.4, 16.9], 12, 16)
    crp = _series("CRP", "mg/L", [3, 48, 22, 9, 4], 0, 5)
    evidence = [
        Evidence(id="Image/cxr-1", kind="image", summary="Chest X-ray PA", source="cxr-1.dcm"),
        Evidence(id="Image/wide-1", kind="image", summary="Panoramic strip"),
        Evidence(id="Image/tall-1", kind="image", summary="Long-leg view"),
        *(
            Evidence(id=o.id, kind="observation", summary=f"{o.text} {o.value} {o.unit}", time=o.effective)
            for o in [*hb, *crp]
        ),
        Evidence(id="Knowledge/url", kind="knowledge", summary=f"Guideline at {LONG_URL}", source=LONG_URL),
    ]
    wide_columns = [f"Column {i} heading" for i in range(14)]
    wide_rows = [[f"r{r}c{c} value" for c in range(14)] for r in range(5)]
    wide_rows[2][3] = LONG_URL
    blocks = [
        HeadingBlock(text="Observation", level=2),
        NoticeBlock(level="info", text="Synthetic case built for the browser test.\nSecond line of the notice."),
        TextBlock(text="Facts from the record, written by okaflow.", cites=["Observation/haemoglobin-2"]),
        TextBlock(
            text=f"Model paragraph one {HOSTILE}.\n\nA second paragraph with a long URL {LONG_URL} and "
            f"a long word {LONG_WORD}.",
            author="model",
            provenance=prov,
            cites=["Image/cxr-1", "Observation/haemoglobin-2", "Knowledge/url"],
        ),
        TextBlock(
            text="The heart is enlarged.",
            author="model",
            provenance=prov,
            flags=[
                VerificationFlag(code="no-citation", message="The claim cites no evidence."),
                VerificationFlag(
                    code="not-supported", message="Image/cxr-1 does not say this.", evidence_id="Image/cxr-1"
                ),
            ],
        ),
        TextBlock(
            text="Evidence-only summary: two low haemoglobin values.",
            author="evidence-only",
            cites=["Observation/haemoglobin-1", "Observation/haemoglobin-2"],
        ),
        HeadingBlock(text=f"Images {LONG_WORD}", level=3),
        ImageBlock(image=store.put_image(_grey((512, 512), 1)), caption="Chest X-ray, PA", evidence_id="Image/cxr-1"),
        ImageBlock(
            image=store.put_image(_grey((2400, 300), 2)),
            caption="Very wide image",
            evidence_id="Image/wide-1",
        ),
        ImageBlock(
            image=store.put_image(_grey((240, 2000), 3)),
            caption="Very tall image",
            evidence_id="Image/tall-1",
        ),
        GeneratedImageBlock(
            image=store.put_image(stamp_label(_grey((1024, 1024), 4))),
            caption="Counterfactual CXR",
            label=SYNTHETIC_LABEL,
            task="counterfactual-cxr",
            derived_from=["Image/cxr-1"],
            provenance=prov,
            ai_generated=True,
        ),
        GeneratedImageBlock(
            image=store.put_image(stamp_label(_grey((64, 64), 5))),
            caption="Tiny generated thumbnail",
            label=SYNTHETIC_LABEL,
            task="text-to-image",
            provenance=prov,
            ai_generated=True,
        ),
        GeneratedImageBlock(
            image=store.put_image(stamp_label(_grey((800, 200), 6), DERIVED_LABEL)),
            caption="Classical contrast enhancement",
            label=DERIVED_LABEL,
            task="clahe",
            derived_from=["Image/wide-1"],
            provenance=classical,
            ai_generated=False,
        ),
        HeadingBlock(text="Analysis", level=2),
        FigureBlock(
            image=store.put_image(plot_observation_trend(hb)),
            caption="Haemoglobin trend",
            cites=[o.id for o in hb],
        ),
        FigureBlock(
            image=store.put_image(plot_observation_panel({"hb": hb, "crp": crp}, title="Labs")),
            caption="Lab panel",
            cites=[o.id for o in crp],
        ),
        TableBlock(title="A wide table", columns=wide_columns, rows=wide_rows, cites=["Observation/crp-1"]),
        TableBlock(columns=["Test", "Value"], rows=[["CRP", "48 mg/L"], ["Note", f"{LONG_WORD}\nline two"]]),
        NoticeBlock(level="warning", text="Two claims could not be verified."),
        CitationsBlock(entries=evidence),
    ]
    return Report(
        title="Browser layout check",
        case_id="case-browser-0001",
        workflow="radiology-report",
        created=CREATED,
        okaflow_version="0.1.0",
        backend="vllm-omni" if model_configured else "none",
        model_id="UniMedVL-14B" if model_configured else None,
        model_configured=model_configured,
        blocks=blocks,
        evidence=evidence,
    )


def _open(browser: Browser, html_path: Path, width: int) -> tuple[Page, list[str], list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html_path.as_uri(), wait_until="load")
    return page, requests, errors


@pytest.fixture(scope="module")
def report_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("browser-report")
    return write_report(_rich_report(base, model_configured=False), base)


@pytest.mark.parametrize("width", [1024, 390])
def test_report_renders_cleanly(browser: Browser, report_files: dict[str, Path], width: int) -> None:
    page, requests, errors = _open(browser, report_files["html"], width)
    try:
        images: list[dict[str, Any]] = page.evaluate(IMAGES_JS)
        assert len(images) == 8
        broken = [i for i in images if not (i["complete"] and i["naturalWidth"] > 0)]
        assert broken == []
        assert all(i["src"].startswith("data:image/png;base64") for i in images)

        layout: dict[str, Any] = page.evaluate(OVERFLOW_JS)
        assert layout["scrollWidth"] <= layout["clientWidth"], layout
        assert layout["offenders"] == [], layout["offenders"][:10]
        # The wide table scrolls inside its own box instead of widening the page.
        wide_scroll, wide_client = layout["scrollers"][0]
        assert wide_scroll > wide_client

        # Self-contained: the only request is the file itself; the hostile text ran nothing.
        assert requests == [report_files["html"].as_uri()]
        assert page.evaluate("window.__pwned === undefined")
        assert errors == []
        assert page.locator(".no-model").is_visible()
        assert page.locator("figure.generated").count() == 3
        assert page.locator(".flag").count() == 2

        page.screenshot(path=str(report_files["html"].parent / f"report-{width}.png"), full_page=True)
    finally:
        page.close()


def test_citation_links_go_there_and_back(browser: Browser, report_files: dict[str, Path]) -> None:
    page, _, _ = _open(browser, report_files["html"], 1024)
    try:
        first = page.locator("sup.cite a").first
        target = first.get_attribute("href")
        assert target is not None
        first.click()
        assert page.evaluate("location.hash") == target
        assert page.locator(f"{target}").is_visible()
        back = page.locator(f"{target} a.backref").first
        back_href = back.get_attribute("href")
        back.click()
        assert page.evaluate("location.hash") == back_href
        assert page.locator(str(back_href)).inner_text().startswith("[")
    finally:
        page.close()


def test_print_layout_fits_a4(browser: Browser, report_files: dict[str, Path], tmp_path: Path) -> None:
    """Printing (emulated) keeps the page free of horizontal overflow and produces a PDF."""
    page, _, _ = _open(browser, report_files["html"], 794)
    try:
        page.emulate_media(media="print")
        layout: dict[str, Any] = page.evaluate(OVERFLOW_JS)
        assert layout["offenders"] == [], layout["offenders"][:10]
        assert layout["scrollers"][0][0] <= layout["scrollers"][0][1] + 1  # tables fitted for paper
        pdf = page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF")
        assert len(pdf) > 10_000
    finally:
        page.close()
