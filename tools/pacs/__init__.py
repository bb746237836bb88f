"""Studies from a PACS over DICOMweb (QIDO-RS, WADO-RS, via dicomweb-client) or DIMSE (C-ECHO, C-FIND, C-GET,
C-MOVE, C-STORE, via pynetdicom). Both clients answer the same :class:`Study`/:class:`Series`/:class:`Instance`
models and write downloads the same way, so :func:`okaflow.pull_case` takes either.

::

    from okaflow.tools.pacs import DICOMwebClient

    with DICOMwebClient("https://pacs.example/dicom-web", token="...") as pacs:
        for study in pacs.search_studies(patient_id="MRN-123"):
            instances = pacs.search_instances(study.study_uid)
            files = pacs.download_instances(instances, "case/images")

    from okaflow.tools.pacs import DIMSEClient

    with DIMSEClient("pacs.example", 11112, called_aet="PACS", calling_aet="OKAFLOW") as pacs:
        pacs.echo()
        (study,) = pacs.search_studies(accession_number="ACC-1")
        files = pacs.retrieve_study(study.study_uid, "case/images")  # C-GET; or move_study(..., port=...)

The PACS must list ``calling_aet`` among its modalities (with host and port, for C-MOVE). Needs
``pip install 'okaflow[pacs]'``. Failures are :class:`okaflow.ClinicalSystemError` subclasses naming the URL
(``dicom://AET@host:port`` for DIMSE). To build a :class:`okaflow.Case` from a FHIR record and its studies in one
call, see :func:`okaflow.pull_case`, or :func:`okaflow.pull_study` from an accession number or a study UID alone.
To write a finished run back (a Structured Report and Secondary Captures in the source study), see
:func:`build_writeback` and :class:`okaflow.tools.publish.DICOMSink`; to receive studies, :class:`StorageSCP`.
"""

from okaflow.tools.pacs._dicomweb import EXPLICIT_VR_LITTLE_ENDIAN_FRAMES, DICOMwebClient
from okaflow.tools.pacs._dimse import DIMSEClient
from okaflow.tools.pacs._models import Instance, Series, Study, check_uid
from okaflow.tools.pacs._scp import IncomingInstance, StorageSCP
from okaflow.tools.pacs._writeback import SRKind, Writeback, build_writeback, writeback_uid

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN_FRAMES",
    "DICOMwebClient",
    "DIMSEClient",
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
