"""What the DICOMweb client accepts from a server before a value becomes a file name."""

from __future__ import annotations

import pytest

import okaflow
from okaflow.tools.pacs import check_uid

URL = "http://pacs.test/dicom-web/studies"


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1", "2.25.123456789012345678901234567890", "0"])
def test_well_formed_uids_pass(uid: str) -> None:
    assert check_uid(uid, "SOPInstanceUID", URL) == uid


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2/3", "1..2", "1.02", "", None, "1." + "2" * 70, "1.2 "])
def test_anything_else_is_refused_naming_the_server(uid: object) -> None:
    with pytest.raises(okaflow.ClinicalResponseError) as info:
        check_uid(uid, "SOPInstanceUID", URL)
    assert URL in str(info.value)
    assert info.value.system == "DICOMweb"
