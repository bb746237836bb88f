"""Receiving a retrieve: the instances a PACS sends back for C-GET (on the same association) or C-MOVE (to a
storage SCP okaflow runs for the call), written as sent and counted until every one asked for is there.

A retrieve is bounded twice: each DIMSE response by ``dimse_timeout``, the whole retrieve by a deadline.
The storage side accepts only the instances asked for, so nothing else a PACS sends lands on disk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from okaflow._errors import ClinicalTimeoutError, ConfigurationError, DIMSEStatusError
from okaflow.tools.pacs._association import (
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    Peer,
    response_status,
    status_category,
)
from okaflow.tools.pacs._models import instance_file

if TYPE_CHECKING:
    from okaflow.tools.pacs._models import Instance

__all__ = ["InstanceReceiver", "get_contexts", "run_get", "run_move", "storage_scp"]

# A C-STORE is answered "refused: not authorised" when a PACS sends an instance nobody asked for.
STORE_REFUSED = 0x0124
STORE_OUT_OF_RESOURCES = 0xA700
_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


class InstanceReceiver:
    """Writes the instances a PACS sends (C-GET sub-operations, C-MOVE to okaflow's storage SCP) to
    ``folder/<series UID>/<SOP instance UID>.dcm``, exactly as sent; refuses any instance not asked for.

    Args:
        expected: The instances asked for, by SOP Instance UID (their UIDs already checked as file names).
        folder: Where they go.
    """

    def __init__(self, expected: Mapping[str, Instance], folder: Path) -> None:
        self.expected = dict(expected)
        self.folder = folder
        self.received: dict[str, Path] = {}
        self.error: OSError | None = None
        self._lock = threading.Lock()

    def handle_store(self, event: Any) -> int:
        """pynetdicom's ``EVT_C_STORE`` handler: the C-STORE status to answer."""
        sop = str(event.request.AffectedSOPInstanceUID)
        instance = self.expected.get(sop)
        if instance is None:
            return STORE_REFUSED
        path = instance_file(self.folder, instance.series_uid, sop)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(event.encoded_dataset())  # the bytes as sent, with file meta: no re-encoding
        except OSError as exc:
            with self._lock:
                self.error = self.error or exc
            return STORE_OUT_OF_RESOURCES
        with self._lock:
            self.received[sop] = path
        return 0x0000

    def missing(self) -> list[str]:
        """SOP Instance UIDs asked for that have not arrived."""
        with self._lock:
            return [sop for sop in self.expected if sop not in self.received]

    def paths(self, order: Sequence[str]) -> list[Path]:
        """The files written, in ``order`` (SOP Instance UIDs); a failed write raises its OSError."""
        if self.error is not None:
            raise self.error
        with self._lock:
            return [self.received[sop] for sop in order]


@contextlib.contextmanager
def storage_scp(peer: Peer, host: str, port: int, receiver: InstanceReceiver, sop_classes: set[str]) -> Iterator[None]:
    """okaflow's own Storage SCP, AE title ``peer.calling_aet``, listening on ``host:port`` for the block.

    It accepts associations addressed to that AE title only, the ``sop_classes`` (every storage class when
    one is unknown) in any transfer syntax, and writes through ``receiver``, which refuses instances not
    asked for.
    """
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

    ae = AE(ae_title=peer.calling_aet)
    peer.configure(ae)
    ae.require_called_aet = True
    classes = sop_classes or {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
    for uid in sorted(classes):
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    try:
        server = ae.start_server((host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver.handle_store)])
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port} for the C-MOVE ({exc})",
            hint="pass a free port= that the PACS lists for calling_aet as its move destination",
        ) from exc
    assert server is not None  # block=False always returns the running server
    try:
        yield
    finally:
        server.shutdown()


def get_contexts(receiver: InstanceReceiver) -> tuple[list[Any], list[Any], list[Any]]:
    """Presentation contexts, role selections and event handlers for a C-GET association.

    The GET model, and each SOP class asked for with okaflow in the SCP role, so the PACS can send them back.
    """
    from pynetdicom import ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_context, build_role, evt

    classes = {i.sop_class_uid or "" for i in receiver.expected.values()}
    if "" in classes:  # the PACS did not say: offer the common storage classes
        classes = {str(cx.abstract_syntax) for cx in StoragePresentationContexts[:127]}
    if len(classes) > 127:
        raise ConfigurationError(f"{len(classes)} SOP classes do not fit one C-GET association (127 at most)")
    # Uncompressed first: the transfer syntax the PACS picks is what lands on disk.
    syntaxes = [_EXPLICIT_VR_LITTLE_ENDIAN, *(s for s in ALL_TRANSFER_SYNTAXES if s != _EXPLICIT_VR_LITTLE_ENDIAN)]
    contexts = [build_context(STUDY_ROOT_GET), *(build_context(uid, syntaxes) for uid in sorted(classes))]
    roles = [build_role(uid, scp_role=True) for uid in sorted(classes)]
    return contexts, roles, [(evt.EVT_C_STORE, receiver.handle_store)]


def run_get(
    peer: Peer,
    assoc: Any,
    watch: Any,
    keys: Mapping[str, str],
    receiver: InstanceReceiver,
    sops: Sequence[str],
    what: str,
    deadline: float,
) -> int:
    """One C-GET request; its final status, once every instance in ``sops`` has arrived."""
    from pydicom import Dataset

    query = Dataset()
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    ends = time.monotonic() + deadline
    code = 0
    for status, _ in assoc.send_c_get(query, STUDY_ROOT_GET):
        code = response_status(peer, "C-GET", status, assoc, watch, what=what)
        if time.monotonic() > ends:
            assoc.abort()
            raise _too_late(peer, "C-GET", what, deadline, receiver)
    check_arrived(peer, "C-GET", code, receiver, what, [sop for sop in sops if sop not in receiver.received])
    return code


def run_move(peer: Peer, assoc: Any, watch: Any, study_uid: str, receiver: InstanceReceiver, deadline: float) -> int:
    """One study-level C-MOVE to ``peer.calling_aet``; its final status, once every instance has arrived."""
    from pydicom import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    what = f"study {study_uid}"
    ends = time.monotonic() + deadline
    code = 0
    for status, _ in assoc.send_c_move(query, peer.calling_aet, STUDY_ROOT_MOVE):
        code = response_status(peer, "C-MOVE", status, assoc, watch, what=what)
        if time.monotonic() > ends:
            assoc.abort()
            raise _too_late(peer, "C-MOVE", what, deadline, receiver)
    # The PACS answers once its sub-operations end, and each C-STORE is answered after its file is written;
    # the poll only covers a PACS that answers before its last sub-operation's association has closed.
    while receiver.missing() and time.monotonic() < ends:
        time.sleep(0.05)
    check_arrived(peer, "C-MOVE", code, receiver, what, receiver.missing())
    return code


def check_arrived(
    peer: Peer, service: str, code: int, receiver: InstanceReceiver, what: str, missing: Sequence[str]
) -> None:
    """A failed write raises its OSError; instances that did not arrive, a DIMSEStatusError counting them."""
    if receiver.error is not None:
        raise receiver.error
    if missing:
        raise DIMSEStatusError(
            f"{peer.url} ended {service} of {what} with status 0x{code:04X} ({status_category(code)}) but "
            f"{len(missing)} of {len(receiver.expected)} instances did not arrive",
            url=peer.url,
            service=service,
            status=code,
            hint="the PACS's log says why its sub-operations failed (transfer syntax? storage refused?)",
        )


def _too_late(peer: Peer, service: str, what: str, deadline: float, receiver: InstanceReceiver) -> ClinicalTimeoutError:
    return ClinicalTimeoutError(
        f"{peer.url}: {service} of {what} did not finish within {deadline:g} s "
        f"({len(receiver.received)} of {len(receiver.expected)} instances arrived)",
        system="DIMSE",
        url=peer.url,
        hint="raise deadline= for a large study",
    )
