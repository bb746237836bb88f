"""HTML: self-contained, escaped, traceable; the layout itself is checked in tests/browser."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from okaflow._errors import RunDirectoryError
from okaflow.tools.reporting import Report, TextBlock, render_html


class _Collector(HTMLParser):
    """Tags, attributes and text of a page, and whether it parses with balanced main elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        self.scripts += tag == "script"


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_page_is_self_contained(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    page = render_html(report, base_dir=base)
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.scripts == 0
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, name, value[:40])
    assert not re.search(r"url\(|@import|https?://", page.split("</style>")[0])


def test_images_are_inlined_with_their_exact_bytes(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    imgs = [a for t, a in _parse(render_html(report, base_dir=base)).tags if t == "img"]
    assert len(imgs) == 3
    hashes = set()
    for attrs in imgs:
        src = str(attrs["src"])
        assert src.startswith("data:image/png;base64,")
        hashes.add(hashlib.sha256(base64.b64decode(src.split(",", 1)[1])).hexdigest())
        assert attrs["width"]
        assert attrs["height"]
        assert attrs["alt"]
    assert hashes == {b.image.sha256 for b in report.blocks if hasattr(b, "image")}


def test_model_text_is_escaped(make_report: Callable[..., Report], tmp_path: Path) -> None:
    hostile = ' <script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"'
    page = render_html(make_report(tmp_path, hostile=hostile), base_dir=tmp_path)
    assert "<script>" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "&amp; &quot;quotes&quot;" in page
    assert _parse(page).scripts == 0


def test_header_badges_flags_and_generated_caption(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    page = render_html(report, base_dir=base)
    assert "<h1>Anaemia follow-up</h1>" in page
    assert "<dt>Case</dt><dd><code>case-0001</code></dd>" in page
    assert "<dt>Model</dt><dd>unimedvl-14b</dd>" in page
    assert 'class="no-model"' not in page
    assert page.count('class="badge author-model"') == 3  # two model texts + the generated image
    assert page.count('class="badge author-evidence-only"') == 1
    assert '<p class="flag flag-no-citation"><strong>⚠ Unverified — cites no evidence</strong>' in page
    generated = page[page.index('<figure class="block generated"') :]
    generated = generated[: generated.index("</figure>")]
    assert '<span class="synthetic-label">AI-GENERATED — NOT FOR DIAGNOSIS</span>' in generated
    assert "prompt 0123456789ab · seed 7" in generated
    assert "0123456789abcdef0123" not in generated  # the prompt hash is shortened


def test_no_model_notice_is_prominent(make_report: Callable[..., Report], tmp_path: Path) -> None:
    page = render_html(make_report(tmp_path, model_configured=False), base_dir=tmp_path)
    notice = page.index('class="no-model" role="alert"')
    assert notice < page.index("<h2")  # before any content
    assert "<em>none configured</em>" in page


def test_citations_link_both_ways(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    page = render_html(report, base_dir=base)
    parsed = _parse(page)
    assert len(parsed.ids) == len(set(parsed.ids)), "ids must be unique"
    ids = set(parsed.ids)
    hrefs = [str(a["href"]) for t, a in parsed.tags if t == "a" and a.get("href")]
    assert any(h.startswith("#cite-") for h in hrefs)
    assert any(h.startswith("#ref-") for h in hrefs)
    assert all(h[1:] in ids for h in hrefs), "every internal link has a target"
    # hb-1 and hb-2 are cited by the first model text (block 2) and the figure (block 7).
    assert '<sup class="cite"><a href="#cite-1" id="ref-2-1">[1]</a></sup>' in page
    assert 'href="#ref-7-1"' in page


def test_unknown_citation_is_marked(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    text = TextBlock(text="Claim.", author="model", cites=["Ghost/1"])
    page = render_html(report.model_copy(update={"blocks": [text], "evidence": []}), base_dir=base)
    assert '<li id="cite-1" class="missing"><code>Ghost/1</code> — ⚠ not in the evidence table' in page
    assert "<h2>Citations</h2>" in page
    assert "No provenance recorded for this model output." in page


def test_print_rules_present(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    page = render_html(report, base_dir=base)
    assert "@media print" in page
    assert "break-inside: avoid" in page
    assert "max-width: 100%" in page


def test_tampered_artifact_is_refused(rich_report: tuple[Report, Path]) -> None:
    report, base = rich_report
    next(iter((base / "artifacts").glob("*.png"))).write_bytes(b"not the image")
    with pytest.raises(RunDirectoryError, match="sha256"):
        render_html(report, base_dir=base)
