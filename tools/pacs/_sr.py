"""The report's text as a DICOM Structured Report (highdicom.sr), in a new series of the source study.

Why Comprehensive SR by default: it is the SR class PACS and viewers most widely store and render after
Basic Text SR, and it leaves room for what okaflow will add next (measurements as NUM items with
spatial coordinates), which Basic Text SR cannot hold. Enhanced SR is offered for archives that ask for
it; the tree below fits all three. Basic Text SR, for viewers that show nothing else, is the same tree
under the Basic Text SR SOP class: highdicom has no class for it, and the tree uses only what Basic Text
SR allows (CONTAINER, TEXT, CODE, UIDREF, IMAGE; CONTAINS, HAS OBS CONTEXT, HAS CONCEPT MOD, INFERRED FROM).

The tree::

    CONTAINER  Diagnostic Imaging Report (LOINC 18748-4)
      HAS OBS CONTEXT  device observer: okaflow, model id           (who wrote the document)
      CONTAINS TEXT  Comment: each notice (e.g. "no model configured")
      CONTAINS CONTAINER  Findings | Impressions | Conclusions      (one per report section, in order)
        CONTAINS TEXT  Finding | Impression | Conclusion: the block's text (+ verify flags)
          HAS CONCEPT MOD  Algorithm Identification: model, backend, prompt hash, seed   (written by a model)
          INFERRED FROM IMAGE  Source image: each cited DICOM image (SOP class + instance UID)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from okaflow._types import Provenance
from okaflow._version import __version__
from okaflow.tools.reporting import NoticeBlock, Report, TextBlock

if TYPE_CHECKING:
    import pydicom

    from okaflow.tools.pacs._writeback import SRKind

__all__ = ["BASIC_TEXT_SR", "build_report_sr", "okaflow_device_uid"]

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
# Report sections (model_backend._analysis.Section) -> (section container, item) DCM code names.
_SECTIONS = {
    "findings": ("Findings", "Finding"),
    "comparison": ("Findings", "Finding"),
    "impression": ("Impressions", "Impression"),
    "answer": ("Conclusions", "Conclusion"),
}


def okaflow_device_uid(model: str) -> str:
    """The Device Observer UID of okaflow running ``model``: fixed per model, so archives can group by it."""
    from okaflow.tools.pacs._writeback import writeback_uid

    return writeback_uid("okaflow-device", model)


def build_report_sr(
    report: Report,
    sources: Mapping[str, pydicom.Dataset],
    *,
    study_reference: pydicom.Dataset,
    kind: SRKind,
    series_uid: str,
    series_number: int,
    sop_uid: str,
    created: datetime,
) -> pydicom.Dataset:
    """The SR document of ``report``, in the study of ``study_reference``.

    Args:
        report: The finished report.
        sources: The run's DICOM source images by evidence id (headers suffice); all become SR evidence.
        study_reference: The source whose patient and study modules the SR copies (highdicom's evidence[0]).
        kind: ``comprehensive``, ``enhanced`` or ``basic``.
        series_uid, series_number, sop_uid: The new series and instance.
        created: Content date and time (the report's creation time).

    Raises:
        ValueError: highdicom refuses the tree or the evidence.
    """
    from highdicom.sr import ComprehensiveSR, EnhancedSR
    from pydicom.uid import UID

    cls = EnhancedSR if kind == "enhanced" else ComprehensiveSR
    evidence = [study_reference, *(ds for ds in sources.values() if ds is not study_reference)]
    sr = cls(
        evidence=evidence,
        content=_content(report, sources),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="okaflow",
        # Complete, but neither final nor verified: approval to send is not a clinician's sign-off.
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=f"okaflow report ({report.workflow}), unverified",
        software_versions=f"okaflow {__version__}",
        content_date=created.date(),
        content_time=created.time(),
        # UTF-8: report text holds symbols (×, ≥, —) that the source's Latin-1 would replace with "?".
        specific_character_set="ISO_IR 192",
    )
    if kind == "basic":
        sr.SOPClassUID = UID(BASIC_TEXT_SR)
        sr.file_meta.MediaStorageSOPClassUID = UID(BASIC_TEXT_SR)
    return sr


def _content(report: Report, sources: Mapping[str, pydicom.Dataset]) -> Any:
    from highdicom.sr import (
        ContainerContentItem,
        ContentSequence,
        DeviceObserverIdentifyingAttributes,
        ObserverContext,
        RelationshipTypeValues,
        TextContentItem,
    )
    from pydicom.sr.codedict import codes

    model = report.model_id or report.backend
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=okaflow_device_uid(model), name="okaflow", manufacturer_name="okaflow", model_name=model
        ),
    )
    items: list[Any] = list(observer)
    for block in report.blocks:
        if isinstance(block, NoticeBlock):
            items.append(
                TextContentItem(
                    name=codes.DCM.Comment, value=block.text, relationship_type=RelationshipTypeValues.CONTAINS
                )
            )
    sections: dict[str, list[TextBlock]] = {}
    for block in report.blocks:
        if isinstance(block, TextBlock) and block.text.strip():
            sections.setdefault(block.section or "findings", []).append(block)
    for section, blocks in sections.items():
        container_name, item_name = _SECTIONS.get(section, ("Findings", "Finding"))
        container = ContainerContentItem(
            name=getattr(codes.DCM, container_name), relationship_type=RelationshipTypeValues.CONTAINS
        )
        container.ContentSequence = ContentSequence(
            [_text_item(b, getattr(codes.DCM, item_name), sources) for b in blocks]
        )
        items.append(container)
    root = ContainerContentItem(name=codes.LN.DiagnosticImagingReport)
    root.ContentSequence = ContentSequence(items)
    return root


def _text_item(block: TextBlock, name: Any, sources: Mapping[str, pydicom.Dataset]) -> Any:
    from highdicom.sr import ContentSequence, ImageContentItem, RelationshipTypeValues, TextContentItem
    from pydicom.sr.codedict import codes

    text = block.text.strip()
    for flag in block.flags:
        text += f" [okaflow verify: {flag.message}]"
    item = TextContentItem(name=name, value=text, relationship_type=RelationshipTypeValues.CONTAINS)
    children: list[Any] = []
    if block.provenance is not None:
        children += list(_algorithm(block.provenance))
    for cited in dict.fromkeys(_image_of(c) for c in block.cites):
        ds = sources.get(cited)
        if ds is not None:
            children.append(
                ImageContentItem(
                    name=codes.DCM.SourceImage,
                    referenced_sop_class_uid=ds.SOPClassUID,
                    referenced_sop_instance_uid=ds.SOPInstanceUID,
                    relationship_type=RelationshipTypeValues.INFERRED_FROM,
                )
            )
    if children:
        item.ContentSequence = ContentSequence(children)
    return item


def _image_of(evidence_id: str) -> str:
    """The image a citation rests on: a measurement (``Measurement/<image>/<name>``) cites its image."""
    if evidence_id.startswith("Measurement/"):
        return "Image/" + evidence_id.removeprefix("Measurement/").rsplit("/", 1)[0]
    return evidence_id


def _algorithm(prov: Provenance) -> Any:
    """TID 4019 Algorithm Identification: the model (or okaflow's analyst), its backend, prompt hash, seed."""
    from highdicom.sr import AlgorithmIdentification

    parameters = [f"backend={prov.backend}", f"model_written={'yes' if prov.is_model else 'no'}"]
    if prov.prompt_hash:
        parameters.append(f"prompt_hash={prov.prompt_hash}")
    if prov.seed is not None:
        parameters.append(f"seed={prov.seed}")
    return AlgorithmIdentification(
        name=prov.model_id or prov.backend,
        # Served model ids carry their own version; okaflow's version names the pipeline around it.
        version=f"okaflow {__version__}",
        parameters=parameters,
        manufacturer="okaflow",
    )
