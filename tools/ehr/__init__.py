"""Patient records from an EHR over FHIR REST: R4, R4B and R5 servers, bearer or SMART backend-services auth.

::

    from okaflow.tools.ehr import FHIRClient, SMARTBackendAuth, fetch_patient_record

    auth = SMARTBackendAuth(client_id="okaflow", private_key="okaflow.pem", scope="system/*.rs")
    with FHIRClient("https://ehr.example/fhir", auth=auth) as ehr:
        record = fetch_patient_record(ehr, "123")      # $everything, or searches with _include, every page
    case = okaflow.Case.from_objects(record.bundle, task="...")

Failures are :class:`okaflow.ClinicalSystemError` subclasses naming the URL and the fix
(:class:`~okaflow.PatientNotFoundError`, :class:`~okaflow.ClinicalAuthenticationError`,
:class:`~okaflow.TokenRequestError` …). SMART signing needs ``pip install 'okaflow[pacs]'``.
"""

from okaflow.tools.ehr._auth import BearerToken, FHIRAuth, SMARTBackendAuth
from okaflow.tools.ehr._client import FHIRClient
from okaflow.tools.ehr._record import RECORD_RESOURCE_TYPES, PatientRecord, RecordStrategy, fetch_patient_record

__all__ = [
    "RECORD_RESOURCE_TYPES",
    "BearerToken",
    "FHIRAuth",
    "FHIRClient",
    "PatientRecord",
    "RecordStrategy",
    "SMARTBackendAuth",
    "fetch_patient_record",
]
