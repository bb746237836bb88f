"""De-identified case bundles: nothing original leaves, everything still links, and the bundle replays."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest

import okaflow
from okaflow import DeidentificationError, Provenance
from okaflow._cli import EXIT_CODES, main
from okaflow.model_backend import UnderstandRequest, UnderstandResult, prompt_hash

from .conftest import EXAMPLE_CASES, EXAMPLES

pytestmark = pytest.mark.integration

# What the chest CT example holds about its (synthetic) patient, as written in its files.
NAME, MRN, BORN = "Jordan Testcase", "CQ500-CT-310", "1936-02-11"
STUDY_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
STUDY_DAY = "2004-01-19"


class QuotingModel:
    """A model that repeats identifying details back, as a real one may: the name, the MRN, the study UID
    and date, in prose and in its citations."""

    name, model_id, is_model = "quoting", "quoting-1", True

    def understand(self, request: UnderstandRequest) -> UnderstandResult:
        claims = request.response_schema["properties"]["claims"]  # type: ignore[index]
        section = claims["items"]["properties"]["section"]["enum"][0]
        patient = next(e.id for e in request.evidence if e.id.startswith("Patient/"))
        study = next(e.id for e in request.evidence if e.id.startswith("ImagingStudy/"))
        text = f"{NAME} (MRN {MRN}, born {BORN}) had CT {STUDY_UID} on {STUDY_DAY}."
        answer = {
            "claims": [{"section": section, "kind": "fact", "text": text, "cites": [patient, study]}],
            "done": True,
        }
        return UnderstandResult(
            text=json.dumps(answer),
            reasoning=f"{NAME} is the patient.",
            provenance=Provenance(backend=self.name, model_id=self.model_id, prompt_hash=prompt_hash(request)),
        )

    async def aunderstand(self, request: UnderstandRequest) -> UnderstandResult:
        return self.understand(request)


@pytest.fixture
def recorded(tmp_path: Path) -> okaflow.RunResult:
    case = shutil.copytree(EXAMPLES / "chest-ct-followup", tmp_path / "case")
    return okaflow.run(case, backend=QuotingModel(), out=tmp_path / "run", max_steps=1, max_claim_chars=400)


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_a_deidentified_bundle_holds_no_original_and_replays_identically(
    recorded: okaflow.RunResult, tmp_path: Path
) -> None:
    assert NAME in (recorded.run_dir / "report.md").read_text()  # the original report quotes them
    bundle = okaflow.export_run(recorded.run_dir, tmp_path / "shared.zip", deidentify=True, key="cohort-key")
    members = _members(bundle)
    originals = [NAME, NAME.upper(), "Testcase", MRN, BORN, BORN.replace("-", ""), STUDY_UID, str(recorded.run_dir)]
    for name, data in members.items():
        for value in originals:
            assert value.encode() not in data, f"{value!r} survives in {name}"
    index = json.loads(members["okaflow-export.json"])
    assert index["deidentified"]["date_shift"] == "withheld" and "cohort-key" not in json.dumps(index)
    # pydicom's file is copied in, de-identified: the importing side must not resolve the original.
    assert "case/images/pydicom/CT_small.dcm" in members

    imported = okaflow.import_run(bundle, tmp_path / "elsewhere")
    replayed = okaflow.replay(imported, out=tmp_path / "elsewhere" / "replay")
    assert replayed.identical, replayed.differing
    assert replayed.unused_model_calls == 0

    # The model's sentence survives with pseudonyms, and its citations still point at evidence that exists.
    report = json.loads((imported / "report.json").read_text())
    manifest = json.loads((imported / "run.json").read_text())
    assert manifest["deidentified"]["model_answers"].startswith("carried over")
    state_claims = [b for b in _blocks(report) if b.get("type") == "claim"] or _claims(imported)
    (claim,) = [c for c in state_claims if "MRN" in c["text"]]
    assert "Anon Patient-" in claim["text"] and "ANON" in claim["text"] and "2.25." in claim["text"]
    evidence_ids = {e["id"] for e in json.loads((imported / "evidence.json").read_text())}
    assert claim["cites"] and set(claim["cites"]) <= evidence_ids


def test_dicom_and_fhir_stay_consistent_and_dates_keep_their_intervals(
    recorded: okaflow.RunResult, tmp_path: Path
) -> None:
    bundle = okaflow.export_run(recorded.run_dir, tmp_path / "shared.zip", deidentify=True, key="cohort-key")
    okaflow.import_run(bundle, tmp_path / "there")
    case = tmp_path / "there" / "case"
    (dcm,) = case.rglob("*.dcm")
    ds = pydicom.dcmread(dcm)
    fhir = json.loads((case / "bundle.json").read_text())
    resources = [e["resource"] for e in fhir["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    study = next(r for r in resources if r["resourceType"] == "ImagingStudy")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.PatientID in {i["value"] for i in patient["identifier"]}
    assert f"urn:oid:{ds.StudyInstanceUID}" in {i["value"] for i in study["identifier"]}
    new_day = date.fromisoformat(study["started"][:10])
    shift = new_day - date.fromisoformat(STUDY_DAY)
    assert -365 <= shift.days <= -30
    assert ds.StudyDate == new_day.strftime("%Y%m%d")
    assert date.fromisoformat(patient["birthDate"]) - date.fromisoformat(BORN) == shift
    # The loaded case links DICOM and FHIR as the original did: no new cross-check warnings.
    assert okaflow.Case.load(case).warnings == okaflow.Case.load(EXAMPLES / "chest-ct-followup").warnings
    # The same key gives the same pseudonyms (a cohort exported run by run stays linkable) ...
    again = _members(okaflow.export_run(recorded.run_dir, tmp_path / "again.zip", deidentify=True, key="cohort-key"))
    assert again["case/bundle.json"] == (case / "bundle.json").read_bytes()
    # ... and another key does not.
    other = _members(okaflow.export_run(recorded.run_dir, tmp_path / "other.zip", deidentify=True, key="other-key"))
    assert other["case/bundle.json"] != again["case/bundle.json"]


def test_an_identifier_hidden_where_the_profile_keeps_values_stops_the_export(tmp_path: Path) -> None:
    case = shutil.copytree(EXAMPLES / "chest-ct-followup", tmp_path / "case")
    ds = pydicom.dcmread(okaflow.Case.load(case).images[0].source)
    ds.Manufacturer = MRN  # a site that writes the MRN where no profile looks
    ds.save_as(case / "ct.dcm")
    manifest = json.loads((case / "case.json").read_text())
    manifest["images"][0]["path"] = "ct.dcm"
    (case / "case.json").write_text(json.dumps(manifest))
    run = okaflow.run(case, out=tmp_path / "run")
    with pytest.raises(DeidentificationError, match=r"ct\.dcm: identifier") as info:
        okaflow.export_run(run.run_dir, tmp_path / "shared.zip", deidentify=True)
    assert MRN not in str(info.value)  # the message names the kind of value, never the value
    assert not (tmp_path / "shared.zip").exists()


def test_burned_in_pixels_are_refused_by_name_through_the_cli(tmp_path: Path) -> None:
    case = shutil.copytree(EXAMPLES / "chest-ct-followup", tmp_path / "case")
    ds = pydicom.dcmread(okaflow.Case.load(case).images[0].source)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(case / "ct.dcm")
    manifest = json.loads((case / "case.json").read_text())
    manifest["images"][0]["path"] = "ct.dcm"
    (case / "case.json").write_text(json.dumps(manifest))
    run = okaflow.run(case, out=tmp_path / "run")
    out = tmp_path / "shared.zip"
    assert main(["export", str(run.run_dir), "--out", str(out), "--deidentify"]) == EXIT_CODES["input"]
    assert not out.exists()
    key = tmp_path / "key"
    key.write_text("k")
    assert main(["export", str(run.run_dir), "--out", str(out), "--key-file", str(key)]) == EXIT_CODES["config"]


def test_the_cli_exports_with_a_key_file_and_a_fixed_shift(recorded: okaflow.RunResult, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("cohort-key\n")
    out = tmp_path / "shared.zip"
    args = ["export", str(recorded.run_dir), "--out", str(out), "--deidentify", "--key-file", str(key)]
    assert main([*args, "--date-shift-days", "-10"]) == EXIT_CODES["ok"]
    fhir = json.loads(_members(out)["case/bundle.json"])
    study = next(e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
    assert study["started"].startswith("2004-01-09")
    assert main([*args, "--key-file", str(tmp_path / "missing")]) == EXIT_CODES["config"]


def _blocks(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in report.get("blocks", []) if isinstance(b, dict)]


def _claims(run_dir: Path) -> list[dict[str, Any]]:
    from okaflow._record import final_state, read_manifest

    return list(final_state(run_dir, read_manifest(run_dir)).get("claims", []))


@pytest.mark.parametrize("name", EXAMPLE_CASES)
def test_every_example_case_exports_de_identified_and_replays(name: str, tmp_path: Path) -> None:
    original = okaflow.run(EXAMPLES / name, out=tmp_path / "run")
    fhir = json.loads((EXAMPLES / name / "bundle.json").read_text())
    patient = next(e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Patient")
    person = patient["name"][0]
    identifying = [" ".join([*person["given"], person["family"]]), patient["birthDate"]]
    identifying += [i["value"] for i in patient.get("identifier", []) if len(i["value"]) >= 5]
    bundle = okaflow.export_run(original.run_dir, tmp_path / "shared.zip", deidentify=True)
    for member, data in _members(bundle).items():
        assert not [v for v in identifying if v.encode() in data], member
    imported = okaflow.import_run(bundle, tmp_path / "there")
    assert okaflow.replay(imported, out=tmp_path / "there" / "replay").identical


def test_an_input_outside_the_case_folder_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    case = shutil.copytree(EXAMPLES / "chest-ct-followup", tmp_path / "case")
    elsewhere = tmp_path / "archive" / "ct.dcm"
    elsewhere.parent.mkdir()
    shutil.copy(okaflow.Case.load(case).images[0].source, elsewhere)  # type: ignore[arg-type]
    before = elsewhere.read_bytes()
    manifest = json.loads((case / "case.json").read_text())
    manifest["images"][0]["path"] = str(elsewhere)  # an absolute path, outside the folder
    (case / "case.json").write_text(json.dumps(manifest))
    run = okaflow.run(case, out=tmp_path / "run")
    with pytest.raises(okaflow.RunDirectoryError, match="not files inside its case folder"):
        okaflow.export_run(run.run_dir, tmp_path / "shared.zip", deidentify=True)
    assert elsewhere.read_bytes() == before and not (tmp_path / "shared.zip").exists()
