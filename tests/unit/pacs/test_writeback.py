"""Building the DICOM write-back of a run without a server: valid objects, fixed UIDs, clear refusals."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

import okaflow
from okaflow.tools.pacs import build_writeback, writeback_uid
from okaflow.tools.pacs._sc import has_label_band
from okaflow.tools.pacs._sr import BASIC_TEXT_SR
from okaflow.tools.publish import DICOMSink
from okaflow.tools.reporting import stamp_label

ROOT = Path(__file__).resolve().parents[3]
CHEST = ROOT / "examples" / "cases" / "chest-ct-followup"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return okaflow.run(CHEST, out=tmp_path_factory.mktemp("wb") / "run").run_dir


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_the_objects_are_valid_dicom_in_the_source_study(run_dir: Path) -> None:
    writeback = build_writeback(run_dir)
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert writeback.study_uid == ct.StudyInstanceUID
    sr = _reread(writeback.sr)
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage and sr.Modality == "SR"
    assert (sr.PatientID, sr.StudyInstanceUID) == (ct.PatientID, ct.StudyInstanceUID)
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert evidence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert writeback.images and {str(ds.SeriesInstanceUID) for ds in writeback.images} != {str(sr.SeriesInstanceUID)}
    assert len({str(ds.SeriesInstanceUID) for ds in writeback.images}) == 1, "one Secondary Capture series"
    for built in writeback.images:
        sc = _reread(built)
        assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
        assert "classical" in sc.DerivationDescription and "SyntheticData" not in sc  # classical: not synthetic
        assert sc.ConversionType == "WSD", "a classical derivation is a workstation image, not a modality's"
        assert has_label_band(sc.pixel_array)
        assert sc.PatientOrientation == ["L", "P"]  # CT_small's rows run to the left, its columns posterior


def test_uids_are_fixed_by_the_run_so_a_rebuild_is_the_same_instances(run_dir: Path) -> None:
    first, second = build_writeback(run_dir), build_writeback(run_dir)
    uids = [str(ds.SOPInstanceUID) for ds in first.datasets]
    assert uids == [str(ds.SOPInstanceUID) for ds in second.datasets]
    assert len(set(uids)) == len(uids) and all(u.startswith("2.25.") and len(u) <= 64 for u in uids)
    assert writeback_uid("a", "b") != writeback_uid("ab")


def test_basic_text_sr_is_the_same_tree_under_its_own_sop_class(run_dir: Path) -> None:
    basic = _reread(build_writeback(run_dir, sr_kind="basic", include_generated=False).sr)
    assert basic.SOPClassUID == BASIC_TEXT_SR and basic.file_meta.MediaStorageSOPClassUID == BASIC_TEXT_SR
    comprehensive = build_writeback(run_dir).sr
    assert basic.SOPInstanceUID != comprehensive.SOPInstanceUID, "another SOP class is another instance"
    kinds = {item.ValueType for item in _walk(basic)}
    assert kinds <= {"CONTAINER", "TEXT", "CODE", "UIDREF", "IMAGE"}


def _walk(ds: Any) -> list[Any]:
    out = []
    for item in ds.get("ContentSequence") or []:
        out += [item, *_walk(item)]
    return out


def test_a_run_without_dicom_images_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    case = tmp_path / "case"
    (case / "images").mkdir(parents=True)
    shutil.copy(CHEST / "bundle.json", case / "bundle.json")
    Image.fromarray(np.full((64, 64), 90, dtype=np.uint8)).save(case / "images" / "photo.png")
    result = okaflow.run(case, out=tmp_path / "run")

    class Refuses:
        audit = None

        def store_instances(self, datasets: Any) -> list[str]:
            raise AssertionError("nothing may be sent")

    with pytest.raises(okaflow.PublishError, match="no DICOM source images"):
        DICOMSink(Refuses()).publish(result.run_dir, {})


def test_a_changed_source_file_is_refused(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run")
    manifest = json.loads((copy / "run.json").read_text())
    manifest["case"]["inputs"]["pydicom:CT_small.dcm"] = "0" * 64
    (copy / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(okaflow.PublishError, match="changed since the run"):
        build_writeback(copy)


def test_the_label_band_is_found_only_where_it_was_burnt_in() -> None:
    plain = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    assert not has_label_band(np.asarray(plain))
    assert has_label_band(np.asarray(stamp_label(plain)))


def test_the_sink_describes_the_pacs_and_refuses_unknown_sr_kinds() -> None:
    class Store:
        audit = None
        url = "http://pacs.example/dicom-web"

        def store_instances(self, datasets: Any) -> list[str]:
            return []

    assert "http://pacs.example/dicom-web" in DICOMSink(Store()).describe()
    assert isinstance(DICOMSink(Store()), okaflow.tools.publish.ReportSink)
    with pytest.raises(okaflow.ConfigurationError):
        DICOMSink(Store(), sr_kind="fancy")  # type: ignore[arg-type]

    class Secret(Store):
        url = "https://robot:hunter2@pacs.example/dicom-web?token=abc"

    class Bare:  # a store of the user's own, with no URL to show
        def store_instances(self, datasets: Any) -> list[str]:
            return []

        def __repr__(self) -> str:
            return "Bare()"

    assert DICOMSink(Secret()).name == "https://pacs.example/dicom-web"
    assert DICOMSink(Bare()).name == "Bare()"  # not "None"


def test_a_misspelt_sr_kind_is_refused_not_built_as_comprehensive(tmp_path: Path) -> None:
    from okaflow.tools.pacs import build_writeback

    with pytest.raises(okaflow.ConfigurationError, match="sr_kind 'Basic' is not one of"):
        build_writeback(tmp_path, sr_kind="Basic")  # type: ignore[arg-type]
