"""Report sinks: destinations outside the run directory, written only after approval.

:class:`FolderSink` copies the report into a folder; :class:`FHIRSink` writes it to an EHR as a FHIR
DiagnosticReport with its images and a Provenance, in one transaction; :class:`DICOMSink` writes it to a
PACS as a Structured Report and Secondary Captures in the source study (STOW-RS or C-STORE).
"""

from okaflow.tools.publish._dicom import PUBLISHED_DICOM, DICOMSink, InstanceStore
from okaflow.tools.publish._fhir import PUBLISHED_FHIR, FHIRSink
from okaflow.tools.publish._sinks import FolderSink, ReportSink

__all__ = ["PUBLISHED_DICOM", "PUBLISHED_FHIR", "DICOMSink", "FHIRSink", "FolderSink", "InstanceStore", "ReportSink"]
