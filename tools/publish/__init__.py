"""Report sinks: destinations outside the run directory, written only after approval.

:class:`FolderSink` copies the report into a folder; :class:`FHIRSink` writes it to an EHR as a FHIR
DiagnosticReport with its images and a Provenance, in one transaction.
"""

from okaflow.tools.publish._fhir import PUBLISHED_FHIR, FHIRSink
from okaflow.tools.publish._sinks import FolderSink, ReportSink

__all__ = ["PUBLISHED_FHIR", "FHIRSink", "FolderSink", "ReportSink"]
