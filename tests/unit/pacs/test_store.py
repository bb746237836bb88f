"""STOW-RS answers read exactly: a partial failure names each refused instance (no server; a fake adapter)."""

from __future__ import annotations

import json
from typing import Any

import pydicom
import pytest
import requests
from requests.adapters import BaseAdapter

import okaflow
from okaflow.tools.pacs import DICOMwebClient

STORED, REFUSED = "1.2.3.1", "1.2.3.2"


def _answer(failed: bool) -> dict[str, Any]:
    ok = {"00081155": {"vr": "UI", "Value": [STORED]}, "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]}}
    body: dict[str, Any] = {"00081199": {"vr": "SQ", "Value": [ok]}}
    if failed:
        bad = {"00081155": {"vr": "UI", "Value": [REFUSED]}, "00081197": {"vr": "US", "Value": [0xA700]}}
        body["00081198"] = {"vr": "SQ", "Value": [bad]}
    return body


class Answers(BaseAdapter):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__()
        self.status, self.body, self.sent = status, body, 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        response = requests.Response()
        response.status_code = self.status
        response._content = json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/dicom+json"
        response.url, response.request, response.reason = str(request.url), request, "x"
        return response

    def close(self) -> None:
        pass


def _datasets() -> list[pydicom.Dataset]:
    out = []
    for uid in (STORED, REFUSED):
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", uid
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, uid
        out.append(ds)
    return out


@pytest.mark.parametrize("status", [202, 409])
def test_a_partial_or_whole_refusal_names_the_refused_instance(status: int) -> None:
    session = requests.Session()
    adapter = Answers(status, _answer(failed=True))
    session.mount("http://", adapter)
    pacs = DICOMwebClient("http://pacs.test/dicom-web", session=session)
    with pacs, pytest.raises(okaflow.ClinicalRejectedError) as info:
        pacs.store_instances(_datasets())
    assert REFUSED in str(info.value) and "out of resources" in str(info.value)
    assert STORED not in str(info.value).split("not stored")[1]
    assert info.value.status_code == status and adapter.sent == 1, "a store is never retried"


def test_an_answer_that_forgets_an_instance_is_not_taken_as_stored() -> None:
    session = requests.Session()
    session.mount("http://", Answers(200, _answer(failed=False)))
    with DICOMwebClient("http://pacs.test/dicom-web", session=session) as pacs:
        with pytest.raises(okaflow.ClinicalResponseError, match=REFUSED):
            pacs.store_instances(_datasets())
        assert pacs.store_instances(_datasets()[:1]) == [STORED]


def test_an_instance_refused_as_a_duplicate_is_already_stored() -> None:
    """A second publish sends the same UIDs; archives that keep the first copy answer 0x0111 for them."""
    body = _answer(failed=False)
    duplicate = {"00081155": {"vr": "UI", "Value": [REFUSED]}, "00081197": {"vr": "US", "Value": [0x0111]}}
    body["00081198"] = {"vr": "SQ", "Value": [duplicate]}
    session = requests.Session()
    session.mount("http://", Answers(202, body))
    with DICOMwebClient("http://pacs.test/dicom-web", session=session) as pacs:
        assert pacs.store_instances(_datasets()) == [STORED, REFUSED]
