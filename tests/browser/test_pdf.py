"""The report printed to PDF by the system's headless Chromium, as FHIRSink(include_pdf=True) attaches it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import okaflow
from okaflow.tools.reporting import render_pdf

from .conftest import chromium_executable

ROOT = Path(__file__).resolve().parents[2]


def test_a_report_prints_to_a_pdf_of_its_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAFLOW_CHROMIUM", chromium_executable())
    result = okaflow.run(ROOT / "examples" / "cases" / "chest-ct-followup", out=tmp_path / "run")
    pdf = render_pdf(result.report_paths["html"])
    data = pdf.read_bytes()
    assert pdf == tmp_path / "run" / "report.pdf" and data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    # The images are embedded (the HTML carries them inline), so the PDF is more than its text.
    assert data.count(b"/Subtype /Image") >= 1 and len(data) > 20_000


def test_the_fhir_sink_attaches_the_printed_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from okaflow.tools.ehr import build_writeback

    monkeypatch.setenv("OKAFLOW_CHROMIUM", chromium_executable())
    result = okaflow.run(ROOT / "examples" / "cases" / "brain-mri", out=tmp_path / "run")
    pdf = render_pdf(result.report_paths["html"]).read_bytes()
    bundle = build_writeback(result.run_dir, patient="Patient/p1", version="R4", pdf=pdf).bundle
    report = bundle["entry"][0]["resource"]
    forms = {f["contentType"]: base64.b64decode(f["data"]) for f in report["presentedForm"]}
    assert forms["application/pdf"] == pdf and forms["text/html"].startswith(b"<!DOCTYPE html>")
