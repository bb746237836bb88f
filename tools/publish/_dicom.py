"""The PACS sink: a finished report as DICOM (a Structured Report and Secondary Captures) in its source study.

::

    from okaflow.tools.pacs import DICOMwebClient
    from okaflow.tools.publish import DICOMSink

    with DICOMwebClient("https://pacs.example/dicom-web") as pacs:
        okaflow.run("case/", sinks=[DICOMSink(pacs)])     # sent only after a human approves

Any client with ``store_instances(datasets) -> list[str]`` and an ``audit`` attribute will do: the
DICOMweb client (STOW-RS) or a DIMSE one (C-STORE). Everything is built and checked before the first
byte is sent; what was stored is recorded in ``<run dir>/published/dicom.json`` and every store in the
run's ``audit.jsonl``. UIDs are derived from the run, so publishing a run again stores nothing new.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from okaflow._audit import AUDIT_LOG, AuditTrail, auditing
from okaflow._errors import ConfigurationError
from okaflow._urls import without_credentials

if TYPE_CHECKING:
    import pydicom

    from okaflow.tools.pacs._writeback import SRKind

__all__ = ["DICOMSink", "InstanceStore"]

PUBLISHED_DICOM = "published/dicom.json"


@runtime_checkable
class InstanceStore(Protocol):
    """A PACS client that stores DICOM instances: DICOMweb (STOW-RS) or DIMSE (C-STORE)."""

    def store_instances(self, datasets: Sequence[pydicom.Dataset]) -> list[str]:
        """Store every instance; their SOP Instance UIDs. A refused instance is a typed error naming it."""
        ...


class DICOMSink:
    """Writes the report into its source study on a PACS: one SR series, one Secondary Capture series.

    Args:
        client: Where to store (:class:`okaflow.tools.pacs.DICOMwebClient`, or a DIMSE client).
        sr_kind: ``"comprehensive"`` (default), ``"enhanced"``, or ``"basic"`` (Basic Text SR, for viewers
            that render nothing else).
        include_generated: Also send every generated or derived image as a Secondary Capture.
        study_uid: The study to attach to, needed when the run's images span several studies.
        name: How :meth:`describe` names the PACS (default: the client's URL or repr).
    """

    def __init__(
        self,
        client: InstanceStore,
        *,
        sr_kind: SRKind = "comprehensive",
        include_generated: bool = True,
        study_uid: str | None = None,
        name: str | None = None,
    ) -> None:
        from okaflow.tools.pacs._writeback import check_sr_kind

        check_sr_kind(sr_kind)
        if not callable(getattr(client, "store_instances", None)):
            raise ConfigurationError(f"{client!r} has no store_instances(datasets)", hint="pass a PACS client")
        self.client = client
        self.sr_kind: SRKind = sr_kind
        self.include_generated = include_generated
        self.study_uid = study_uid
        url = getattr(client, "url", None)
        self.name = name or (without_credentials(str(url)) if url else repr(client))

    def __repr__(self) -> str:
        return f"DICOMSink({self.name!r}, sr_kind={self.sr_kind!r})"

    def describe(self) -> str:
        images = " + Secondary Capture images" if self.include_generated else ""
        return f"PACS {self.name} (DICOM {self.sr_kind} SR{images}, in the source study)"

    def publish(self, run_dir: Path, report_paths: Mapping[str, str]) -> str:
        """Build everything, store it, record it; where it went.

        Raises:
            PublishError: Nothing to attach to, or an object fails to build (nothing was sent).
            ClinicalSystemError: The PACS refused or failed (e.g. :class:`~okaflow.ClinicalRejectedError`
                naming the refused instances); the run's audit trail records the attempt.
        """
        from okaflow.tools.pacs._writeback import build_writeback

        run = Path(run_dir)
        writeback = build_writeback(
            run, sr_kind=self.sr_kind, include_generated=self.include_generated, study_uid=self.study_uid
        )
        with auditing(AuditTrail(run / AUDIT_LOG)):
            stored = self.client.store_instances(writeback.datasets)
        record = {"pacs": self.name, "sr_kind": self.sr_kind, **writeback.summary(), "stored": stored}
        target = run / PUBLISHED_DICOM
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=2), encoding="utf-8")
        return (
            f"{self.name} study {writeback.study_uid}: SR {writeback.sr.SOPInstanceUID}"
            f" and {len(writeback.images)} Secondary Capture image(s)"
        )
