"""A DICOM Storage SCP (a C-STORE receiver), via pynetdicom: how studies reach ``okaflow listen``.

The SCP accepts every storage SOP class in every transfer syntax (it stores bytes as sent, it never
decodes pixels), checks each instance's UIDs, and hands the encoded Part-10 file to a ``store``
callback. Success is answered only after the callback returned, so an instance the sender was told
is stored is on disk: a failed write is answered "out of resources" and the sender keeps its copy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from okaflow._closing import Closing
from okaflow._constants import (
    DIMSE_ACSE_TIMEOUT_S,
    DIMSE_NETWORK_TIMEOUT_S,
    DIMSE_TIMEOUT_S,
    LISTEN_AET,
    LISTEN_HOST,
    LISTEN_MAX_ASSOCIATIONS,
    LISTEN_MAX_INSTANCE_BYTES,
    LISTEN_PORT,
)
from okaflow._errors import ClinicalConnectionError, ConfigurationError
from okaflow.tools.pacs._association import check_aet, load_pynetdicom
from okaflow.tools.pacs._models import UID_PATTERN

__all__ = ["IncomingInstance", "StorageSCP"]

# DIMSE statuses the SCP answers (PS3.4 Annex B.2.3).
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class IncomingInstance:
    """One instance a peer sent: its UIDs (checked), who sent it, and the encoded Part-10 file."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    calling_aet: str
    peer: str
    association: int
    data: bytes


class StorageSCP(Closing):
    """Receives studies over DICOM (C-STORE, and C-ECHO for connectivity checks). A context manager.

    Args:
        store: Called with each :class:`IncomingInstance`; it must write the instance durably before
            returning, and raise if it cannot (the sender is then answered "out of resources").
        on_association_end: Called with an association's key (:attr:`IncomingInstance.association`) when it
            is released, aborted or dropped; possibly more than once.
        host: The address to listen on (default loopback; ``0.0.0.0`` to take studies from the network).
        port: The TCP port (default 11112).
        ae_title: Our AE title; peers must call it.
        allowed_calling_aets: Only these peers may associate (None: any peer).
        max_instance_bytes: Larger instances are refused with "out of resources".

    Raises:
        MissingExtraError: pynetdicom is not installed (``pip install 'okaflow[pacs]'``).
        ClinicalConnectionError: the port cannot be bound (in use, or not allowed).
    """

    def __init__(
        self,
        store: Callable[[IncomingInstance], None],
        *,
        on_association_end: Callable[[int], None] | None = None,
        host: str = LISTEN_HOST,
        port: int = LISTEN_PORT,
        ae_title: str = LISTEN_AET,
        allowed_calling_aets: Collection[str] | None = None,
        max_instance_bytes: int = LISTEN_MAX_INSTANCE_BYTES,
    ) -> None:
        pynetdicom = load_pynetdicom("the DICOM Storage SCP")
        from pynetdicom import evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        if not 0 < port < 65536:
            raise ConfigurationError(f"port {port} is not a TCP port")
        check_aet(ae_title, "ae_title")
        self._store = store
        self._on_end = on_association_end
        self._max_bytes = max_instance_bytes
        self.host, self.port, self.ae_title = host, port, ae_title
        ae = pynetdicom.AE(ae_title=ae_title)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = (
            DIMSE_ACSE_TIMEOUT_S,
            DIMSE_TIMEOUT_S,
            DIMSE_NETWORK_TIMEOUT_S,
        )
        ae.maximum_associations = LISTEN_MAX_ASSOCIATIONS
        ae.require_called_aet = True  # a peer must call us by our AE title
        if allowed_calling_aets:
            ae.require_calling_aet = list(allowed_calling_aets)
        for context in pynetdicom.AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, pynetdicom.ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_RELEASED, self._handle_end),
            (evt.EVT_ABORTED, self._handle_end),
            (evt.EVT_CONN_CLOSE, self._handle_end),
        ]
        try:
            self._server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise ClinicalConnectionError(
                f"cannot listen on {host}:{port} ({exc})",
                system="DIMSE",
                url=f"dicom://{ae_title}@{host}:{port}",
                hint="the port is in use or not allowed: choose another --port",
            ) from None
        self._ae = ae

    def __repr__(self) -> str:
        return f"StorageSCP({self.ae_title!r} on {self.host}:{self.port})"

    def close(self) -> None:
        """Stop listening; associations in progress are ended (their senders retry what was not answered)."""
        self._server.shutdown()

    def _handle_store(self, event: Any) -> int:
        assoc = event.assoc
        raw = getattr(event.request, "DataSet", None)
        # Checked before anything is decoded or copied: an oversized instance costs no more memory.
        if raw is not None and hasattr(raw, "getbuffer") and raw.getbuffer().nbytes > self._max_bytes:
            return _OUT_OF_RESOURCES
        try:
            ds = event.dataset
            uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
            sop_class = str(ds.get("SOPClassUID", "") or event.request.AffectedSOPClassUID)
        except Exception:  # an undecodable data set: refused, never stored
            return _CANNOT_UNDERSTAND
        # UIDs become folder and file names: anything but digits and dots (``..``, ``/``) is refused.
        if not all(len(u) <= 64 and UID_PATTERN.match(u) for u in uids):
            return _CANNOT_UNDERSTAND
        data = event.encoded_dataset()
        if len(data) > self._max_bytes:
            return _OUT_OF_RESOURCES
        instance = IncomingInstance(
            study_uid=uids[0],
            series_uid=uids[1],
            sop_instance_uid=uids[2],
            sop_class_uid=sop_class,
            calling_aet=str(assoc.requestor.ae_title),
            peer=f"{assoc.requestor.address}:{assoc.requestor.port}",
            association=id(assoc),
            data=data,
        )
        try:
            self._store(instance)
        except Exception:  # the write failed: the sender keeps its copy and may send it again
            return _OUT_OF_RESOURCES
        return _SUCCESS

    def _handle_end(self, event: Any) -> None:
        # Called once per release/abort and again when the connection closes: the callback is idempotent.
        if self._on_end is not None:
            self._on_end(id(event.assoc))
