"""okaflow pull on the command line, against the real sekmet-fhir and Orthanc (DICOMweb and DIMSE)."""

from __future__ import annotations

from pathlib import Path

import pytest

import okaflow
from okaflow._cli import EXIT_CODES, main

from .conftest import STATIC_TOKEN, FHIRServer, PACSServer, new_patient_with_study, synthetic_dicom

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAFLOW_FHIR_TOKEN", STATIC_TOKEN)


def test_pull_by_mrn_over_dicomweb_then_by_accession_over_dimse(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_mrn = tmp_path / "by-mrn"
    code = main(
        ["pull", "--out", str(by_mrn), "--fhir-url", fhir_server.base_url, "--mrn", "OKA-PACS-001",
         "--dicomweb", pacs_server.dicomweb_url, "--task", "CRP trend"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    case = okaflow.Case.load(by_mrn)
    assert case.task == "CRP trend" and case.images and f"okaflow run {by_mrn}" in capsys.readouterr().out
    ct = synthetic_dicom("CT_STUDY")
    by_accession = tmp_path / "by-accession"
    dimse = f"{pacs_server.aet}@127.0.0.1:{pacs_server.dicom_port}"
    code = main(
        ["pull", "--out", str(by_accession), "--fhir-url", fhir_server.base_url,
         "--accession", str(ct.AccessionNumber), "--dimse", dimse]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert {i.study_uid for i in okaflow.Case.load(by_accession).images} == {str(ct.StudyInstanceUID)}
    assert {e["system"] for e in okaflow.read_audit(by_accession)} == {"FHIR", "DIMSE"}


def test_pull_says_what_is_wrong_with_an_exit_code_for_scripts(
    fhir_server: FHIRServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = main(["pull", "--out", str(tmp_path / "a"), "--fhir-url", fhir_server.base_url, "--mrn", "NOBODY"])
    assert unknown == EXIT_CODES["input"] and "0 Patients" in capsys.readouterr().err
    no_pacs = main(["pull", "--out", str(tmp_path / "b"), "--fhir-url", fhir_server.base_url, "--accession", "A"])
    assert no_pacs == EXIT_CODES["config"] and "need a PACS" in capsys.readouterr().err
    down = main(["pull", "--out", str(tmp_path / "c"), "--fhir-url", "http://127.0.0.1:9/fhir", "--patient", "1"])
    assert down == EXIT_CODES["clinical"] and "cannot reach" in capsys.readouterr().err


def test_run_pushes_to_both_servers_only_after_approval_with_the_same_flags(
    fhir_server: FHIRServer, pacs_server: PACSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from okaflow.tools.ehr import FHIRClient
    from okaflow.tools.pacs import DICOMwebClient

    patient_id, ds = new_patient_with_study(fhir_server, pacs_server, "OKA-CLI-PUSH-001")
    case = tmp_path / "case"
    dimse = f"{pacs_server.aet}@127.0.0.1:{pacs_server.dicom_port}"
    assert main(["pull", "--out", str(case), "--fhir-url", fhir_server.base_url, "--patient", patient_id,
                 "--dimse", dimse]) == 0  # fmt: skip
    push = ["--push-fhir", fhir_server.base_url, "--push-dicomweb", pacs_server.dicomweb_url, "--sr-kind", "basic"]
    run_dir = tmp_path / "run"
    assert main(["run", str(case), "--out", str(run_dir), *push]) == EXIT_CODES["awaiting_approval"]
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr:
        assert ehr.search("DiagnosticReport", {"subject": f"Patient/{patient_id}"}) == [], "written before approval"
    capsys.readouterr()
    # Approving with other sinks than the run was started with is refused; with the same, both are written.
    assert main(["approve", str(run_dir), str(case), "--yes", "--push-fhir", fhir_server.base_url]) != 0
    assert "was started to publish to" in capsys.readouterr().err
    assert main(["approve", str(run_dir), str(case), "--yes", "--by", "dr-cli", *push]) == 0
    with FHIRClient(fhir_server.base_url, auth=STATIC_TOKEN) as ehr:
        assert len(ehr.search("DiagnosticReport", {"subject": f"Patient/{patient_id}"})) == 1
    with DICOMwebClient(pacs_server.dicomweb_url) as web:
        series = web.search_series(str(ds.StudyInstanceUID))
    assert "SR" in {s.modality for s in series}
    writes = [e for e in okaflow.read_audit(run_dir) if e["action"] in ("approve", "transaction", "store")]
    assert [e["action"] for e in writes] == ["approve", "transaction", "store"] and "dr-cli" in writes[0]["detail"]
