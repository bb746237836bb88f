"""Studies from a PACS over DICOMweb: QIDO-RS searches, WADO-RS instances and frames (via dicomweb-client).

::

    from okaflow.tools.pacs import DICOMwebClient

    with DICOMwebClient("https://pacs.example/dicom-web", token="...") as pacs:
        for study in pacs.search_studies(patient_id="MRN-123"):
            instances = pacs.search_instances(study.study_uid)
            files = pacs.download_instances(instances, "case/images")

To write a finished run back (a Structured Report and Secondary Captures in the source study), see
:func:`build_writeback` and :class:`okaflow.tools.publish.DICOMSink`.

Needs ``pip install 'okaflow[pacs]'``. Failures are :class:`okaflow.ClinicalSystemError` subclasses naming
the URL. To build a :class:`okaflow.Case` from a FHIR record and its studies in one call, see
:func:`okaflow.pull_case`.
"""

from okaflow.tools.pacs._dicomweb import EXPLICIT_VR_LITTLE_ENDIAN_FRAMES, DICOMwebClient
from okaflow.tools.pacs._models import Instance, Series, Study, check_uid
from okaflow.tools.pacs._scp import IncomingInstance, StorageSCP
from okaflow.tools.pacs._writeback import SRKind, Writeback, build_writeback, writeback_uid

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN_FRAMES",
    "DICOMwebClient",
    "IncomingInstance",
    "Instance",
    "SRKind",
    "Series",
    "StorageSCP",
    "Study",
    "Writeback",
    "build_writeback",
    "check_uid",
    "writeback_uid",
]
