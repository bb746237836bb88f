"""Patient records from an EHR over FHIR REST, and reports written back: R4, R4B and R5 servers, bearer or
SMART backend-services auth.

::

    from okaflow.tools.ehr import FHIRClient, SMARTBackendAuth, fetch_patient_record

    auth = SMARTBackendAuth(client_id="okaflow", private_key="okaflow.pem", scope="system/*.rs")
    with FHIRClient("https://ehr.example/fhir", auth=auth) as ehr:
        record = fetch_patient_record(ehr, "123")      # $everything, or searches with _include, every page
    case = okaflow.Case.from_objects(record.bundle, task="...")

``build_writeback(run_dir, patient=..., version=...)`` turns a finished run into one validated transaction
Bundle (DiagnosticReport, Media or DocumentReference, Provenance); :class:`okaflow.tools.publish.FHIRSink`
sends it after approval. ``ehr.transaction(bundle)`` and ``ehr.read(..., if_none_match=etag)`` are the
write and conditional-read calls underneath.

Failures are :class:`okaflow.ClinicalSystemError` subclasses naming the URL and the fix
(:class:`~okaflow.PatientNotFoundError`, :class:`~okaflow.ClinicalAuthenticationError`,
:class:`~okaflow.TokenRequestError` …). SMART signing needs ``pip install 'okaflow[pacs]'``.
"""

from okaflow.tools.ehr._auth import BearerToken, FHIRAuth, SMARTBackendAuth
from okaflow.tools.ehr._client import ConditionalRead, FHIRClient
from okaflow.tools.ehr._record import RECORD_RESOURCE_TYPES, PatientRecord, RecordStrategy, fetch_patient_record
from okaflow.tools.ehr._writeback import AI_GENERATED_NOTE, ReportStatus, Writeback, build_writeback

__all__ = [
    "AI_GENERATED_NOTE",
    "RECORD_RESOURCE_TYPES",
    "BearerToken",
    "ConditionalRead",
    "FHIRAuth",
    "FHIRClient",
    "PatientRecord",
    "RecordStrategy",
    "ReportStatus",
    "SMARTBackendAuth",
    "Writeback",
    "build_writeback",
    "fetch_patient_record",
]
