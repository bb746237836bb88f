"""What DIMSEClient refuses before any association, and a peer that accepts TCP but never speaks DICOM."""

from __future__ import annotations

import socket

import pytest

import okaflow
from okaflow.tools.pacs import DIMSEClient


@pytest.mark.parametrize("aet", ["", "   ", "A" * 17, "BAD\\AET"])
def test_an_ae_title_dicom_does_not_allow_is_refused(aet: str) -> None:
    with pytest.raises(okaflow.ConfigurationError, match="AE title"):
        DIMSEClient("127.0.0.1", 104, called_aet="PACS", calling_aet=aet)
    # The Storage SCP (okaflow listen --aet) applies the same rule, before pynetdicom sees the title.
    from okaflow.tools.pacs import StorageSCP

    with pytest.raises(okaflow.ConfigurationError, match="AE title") as info:
        StorageSCP(lambda instance: None, port=11112, ae_title=aet)
    assert "no backslash" in (info.value.hint or "")


def test_host_port_and_aet_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAFLOW_DIMSE_HOST", "pacs.test")
    monkeypatch.setenv("OKAFLOW_DIMSE_PORT", "11112")
    monkeypatch.setenv("OKAFLOW_DIMSE_AET", "PACS")
    assert DIMSEClient().url == "dicom://PACS@pacs.test:11112"
    monkeypatch.delenv("OKAFLOW_DIMSE_AET")
    with pytest.raises(okaflow.ConfigurationError, match="OKAFLOW_DIMSE_AET"):
        DIMSEClient()


def test_a_peer_that_never_answers_the_association_request_is_a_timeout() -> None:
    # The kernel completes the TCP handshake for a listening socket nobody accepts from: a silent peer.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        pacs = DIMSEClient("127.0.0.1", port, called_aet="PACS", acse_timeout=0.5)
        with pacs, pytest.raises(okaflow.ClinicalTimeoutError) as info:
            pacs.echo()
    assert info.value.url == f"dicom://PACS@127.0.0.1:{port}"
    assert "0.5 s" in str(info.value)
