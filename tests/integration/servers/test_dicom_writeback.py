"""A finished run written back to a real Orthanc as DICOM: SR and Secondary Captures, read back over DICOMweb."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import okaflow
from okaflow._constants import SYNTHETIC_LABEL
from okaflow.model_backend import free_port
from okaflow.tools.generation import ClassicalGenerator, GenerationRequest, GenerationResult, GeneratorChain
from okaflow.tools.imaging import MedicalImage, render_frame
from okaflow.tools.pacs import DICOMwebClient, Instance, build_writeback
from okaflow.tools.publish import DICOMSink
from okaflow.tools.reporting import stamp_label

from .conftest import ROOT, PACSServer, synthetic_dicom

pytestmark = pytest.mark.integration
PATIENT = "OKA-PACS-003"


class TinySuperResolution:
    """A stand-in generative model: nearest-neighbour 2x, labelled AI-GENERATED as every okaflow generator does."""

    name = "tiny-test"
    model_id = "tiny-sr-1"

    def supports(self, task: str) -> bool:
        return task == "super_resolution"

    def generate(self, request: GenerationRequest, images: Mapping[str, MedicalImage]) -> GenerationResult:
        base = render_frame(images[request.sources[0]], frame="middle")
        out = stamp_label(base.resize((base.width * 2, base.height * 2), Image.Resampling.NEAREST), SYNTHETIC_LABEL)
        return GenerationResult(
            task=request.task,
            images=[out],
            captions=["tiny 2x super-resolution"],
            label=SYNTHETIC_LABEL,
            backend=self.name,
            model_id=self.model_id,
            ai_generated=True,
            derived_from=list(request.sources),
            seed=7,
        )


def _case_from_pacs(pacs_server: PACSServer, folder: Path, study: str) -> Path:
    """A case folder of the study's instances as Orthanc returns them, with a synthetic FHIR bundle."""
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        files = pacs.download_instances(pacs.search_instances(study), folder / "images")
    shutil.copy(ROOT / "examples" / "cases" / "chest-ct-followup" / "bundle.json", folder / "bundle.json")
    manifest = folder / "case.json"
    listed = json.loads(manifest.read_text())["images"] if manifest.exists() else []
    listed += [f.relative_to(folder).as_posix() for f in files]
    manifest.write_text(json.dumps({"id": "writeback", "bundle": "bundle.json", "images": listed}))
    return folder


def _instances(pacs: DICOMwebClient, study: str) -> dict[str, list[Instance]]:
    by_series: dict[str, list[Instance]] = {}
    for series in pacs.search_series(study):
        by_series[series.modality or ""] = pacs.search_instances(study, series.series_uid)
    return by_series


def _items(ds: Any) -> list[Any]:
    out = []
    for item in ds.get("ContentSequence") or []:
        out.append(item)
        out += _items(item)
    return out


def _text(item: Any, meaning: str) -> bool:
    return item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeMeaning == meaning


def test_a_run_is_written_back_as_an_sr_and_labelled_secondary_captures(
    pacs_server: PACSServer, tmp_path: Path
) -> None:
    ct = synthetic_dicom("WRITEBACK_STUDY")
    study = str(ct.StudyInstanceUID)
    case = _case_from_pacs(pacs_server, tmp_path / "case", study)
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        result = okaflow.run(
            case,
            out=tmp_path / "run",
            sinks=[DICOMSink(pacs)],
            require_approval=False,
            generator=GeneratorChain(TinySuperResolution(), ClassicalGenerator()),
        )
        assert result.status == "completed"
        (where,) = result.state["published"]
        assert study in where
        found = _instances(pacs, study)
        assert sorted(found) == ["CT", "OT", "SR"], "one new SR series and one new Secondary Capture series"
        (sr_instance,) = found["SR"]
        sr = pacs.retrieve_instance(sr_instance)
        captures = [pacs.retrieve_instance(i) for i in found["OT"]]
    report = result.report
    # The SR: in the source study, the patient copied, a device observer naming okaflow and the model.
    assert sr.StudyInstanceUID == study and sr.PatientID == PATIENT
    assert sr.SeriesInstanceUID != ct.SeriesInstanceUID
    items = _items(sr)
    assert any(_text(i, "Device Observer Name") and i.TextValue == "okaflow" for i in items)
    assert any(_text(i, "Device Observer Model Name") and i.TextValue == report.model_id for i in items)
    texts = [i for i in items if _text(i, "Finding")]
    assert texts, "the report's findings are TEXT items"
    assert any(_text(i, "Algorithm Name") for i in items), "model-written text says who wrote it"
    assert any(_text(i, "Algorithm Parameters") and i.TextValue.startswith("prompt_hash=") for i in items)
    images = [i for i in items if i.ValueType == "IMAGE"]
    assert images, "the findings reference the images they cite"
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images} == {str(ct.SOPInstanceUID)}
    assert str(ct.SOPInstanceUID) in pacs_server.instances  # ... which is the stored source instance
    # The Secondary Captures: derived, burnt-in label, source references, synthetic flag only on the AI one.
    blocks = {b.image.sha256: b for b in report.blocks if b.type == "generated_image"}
    assert len(captures) == len(blocks) == 4  # three CT windows (classical) and one super-resolution (AI)
    run_dir = result.run_dir
    for sc in captures:
        assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "YES"
        assert sc.StudyInstanceUID == study and sc.PatientID == PATIENT
        (source,) = sc.SourceImageSequence
        assert source.ReferencedSOPInstanceUID == ct.SOPInstanceUID
        pixels = sc.pixel_array
        block = next(
            b
            for b in blocks.values()
            if np.array_equal(np.asarray(Image.open(run_dir / b.image.path).convert("RGB")), pixels)
        )
        assert block.task in sc.DerivationDescription
        if block.ai_generated:
            assert "tiny-sr-1" in sc.DerivationDescription and "seed 7" in sc.DerivationDescription
            assert sc.SyntheticData == "YES" and sc.ConversionType == "SYN"
        else:
            assert "SyntheticData" not in sc and sc.ConversionType == "WSD"
    assert sum(b.ai_generated for b in blocks.values()) == 1
    # What was stored is in the run directory, and in its audit trail.
    record = json.loads((run_dir / "published" / "dicom.json").read_text())
    assert record["study_uid"] == study and str(sr.SOPInstanceUID) in record["stored"]
    stores = [e for e in okaflow.read_audit(run_dir) if e["action"] == "store"]
    assert [e["outcome"] for e in stores] == ["success"] and stores[0]["system"] == "DICOMweb"
    assert str(sr.SOPInstanceUID) in stores[0]["detail"]

    # Publishing the same run again stores the same instances: nothing new on the PACS.
    with DICOMwebClient(pacs_server.dicomweb_url) as pacs:
        again = DICOMSink(pacs).publish(run_dir, {})
        after = _instances(pacs, study)
    assert again == where
    assert {k: sorted(i.sop_instance_uid for i in v) for k, v in after.items()} == {
        k: sorted(i.sop_instance_uid for i in v) for k, v in found.items()
    }
    assert json.loads((run_dir / "published" / "dicom.json").read_text())["stored"] == record["stored"]


def test_a_case_spanning_two_studies_needs_the_study_named(pacs_server: PACSServer, tmp_path: Path) -> None:
    ct, mr = (str(synthetic_dicom(n).StudyInstanceUID) for n in ("CT_STUDY", "MR_STUDY"))
    case = _case_from_pacs(pacs_server, tmp_path / "case", ct)
    _case_from_pacs(pacs_server, case, mr)
    result = okaflow.run(case, out=tmp_path / "run")
    with pytest.raises(okaflow.PublishError, match="span 2 studies") as info:
        build_writeback(result.run_dir)
    assert ct in str(info.value) and mr in str(info.value)
    chosen = build_writeback(result.run_dir, study_uid=ct)
    assert {str(ds.StudyInstanceUID) for ds in chosen.datasets} == {ct}


def test_a_refused_store_is_a_typed_error_in_the_audit_trail(pacs_server: PACSServer, tmp_path: Path) -> None:
    bad = synthetic_dicom("CT_STUDY")
    del bad.SOPInstanceUID  # Orthanc refuses an instance without its UID
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    with DICOMwebClient(pacs_server.dicomweb_url, audit=trail) as pacs, pytest.raises(okaflow.ClinicalRejectedError):
        pacs.store_instances([bad])
    (entry,) = okaflow.read_audit(tmp_path)
    assert (entry["action"], entry["outcome"], entry["status"]) == ("store", "failure", 400)


def test_a_pacs_that_is_down_leaves_nothing_recorded_as_published(tmp_path: Path) -> None:
    result = okaflow.run(ROOT / "examples" / "cases" / "chest-ct-followup", out=tmp_path / "run")
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    with DICOMwebClient(url, max_retries=0) as pacs, pytest.raises(okaflow.ClinicalConnectionError):
        DICOMSink(pacs).publish(result.run_dir, {})
    assert not (result.run_dir / "published").exists()
    (entry,) = [e for e in okaflow.read_audit(result.run_dir) if e["action"] == "store"]
    assert entry["outcome"] == "failure"
