"""Report sinks: destinations outside the run directory, written only after approval."""

from okaflow.tools.publish._dicom import DICOMSink, InstanceStore
from okaflow.tools.publish._sinks import FolderSink, ReportSink

__all__ = ["DICOMSink", "FolderSink", "InstanceStore", "ReportSink"]
