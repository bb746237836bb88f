"""DICOM associations for :class:`~okaflow.tools.pacs.DIMSEClient`: opened with bounded timeouts, and every
way one can fail turned into a typed :class:`~okaflow.ClinicalSystemError`.

pynetdicom reports a failed association through flags on the association and lines in its log. Which
failure it was (nothing listening, a peer that never answered, a rejection and its reason, an abort, no
accepted presentation context) is read here from the association's own events: whether the TCP connection
opened, and which ACSE primitives came back. The same goes for a DIMSE request that got no response: an
abort from the peer is an :class:`~okaflow.AssociationError`, silence past ``dimse_timeout`` a
:class:`~okaflow.ClinicalTimeoutError`, and a failure status a :class:`~okaflow.DIMSEStatusError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from okaflow._constants import ENV_DIMSE_HOST, ENV_DIMSE_PORT
from okaflow._errors import (
    AssociationError,
    ClinicalConnectionError,
    ClinicalSystemError,
    ClinicalTimeoutError,
    ConfigurationError,
    DIMSEStatusError,
    MissingExtraError,
)

if TYPE_CHECKING:
    import pydicom

__all__ = [
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "VERIFICATION",
    "Peer",
    "associate",
    "check_aet",
    "load_pynetdicom",
    "require_context",
    "response_status",
    "status_category",
    "status_error",
]

#: The SOP classes okaflow asks for (pynetdicom's sop_class module makes these at run time, unseen by mypy).
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

#: Hints for the failure statuses an integrator can act on.
_STATUS_HINTS = {
    0xA801: "the PACS does not know the move destination's AE title: add calling_aet, with this host and the "
    "storage port, to the PACS's DICOM modalities",
    0x0122: "the PACS does not accept this SOP class",
    0x0124: "the PACS refused calling_aet for this service: check that it lists calling_aet and allows it",
}
_SERVICE_HINTS = {
    "C-MOVE": "is calling_aet a move destination the PACS knows (its DICOM modalities, with this host and port)? "
    "the PACS's log says why",
    "C-STORE": "the PACS refused the instance: its log says why",
}
_STATUS_TABLES = {"C-ECHO": "VERIFICATION", "C-FIND": "QR_FIND", "C-GET": "QR_GET", "C-MOVE": "QR_MOVE"}


@dataclass(frozen=True)
class Peer:
    """A PACS's DICOM address and the AE titles and timeouts used to talk to it."""

    host: str
    port: int
    called_aet: str
    calling_aet: str
    connect_timeout: float
    acse_timeout: float
    dimse_timeout: float
    network_timeout: float

    @property
    def endpoint(self) -> str:
        """``AET@host:port``, as the audit trail names it."""
        return f"{self.called_aet}@{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``dicom://AET@host:port``, as errors name it."""
        return f"dicom://{self.endpoint}"

    def configure(self, ae: Any) -> None:
        """Bound every wait of a pynetdicom ``AE`` by this peer's timeouts."""
        ae.connection_timeout = self.connect_timeout
        ae.acse_timeout = self.acse_timeout
        ae.dimse_timeout = self.dimse_timeout
        ae.network_timeout = self.network_timeout


class _Watch:
    """What one association's events said: whether TCP connected, which ACSE primitives came back."""

    def __init__(self) -> None:
        self.connected = False
        self.received: list[Any] = []

    def on_open(self, event: Any) -> None:
        self.connected = True

    def on_acse(self, event: Any) -> None:
        self.received.append(event.primitive)

    def peer_aborted(self, assoc: Any) -> bool:
        from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT

        # The reactor may not have taken the abort off the queue yet; pynetdicom's own check peeks there.
        return any(isinstance(p, A_ABORT | A_P_ABORT) for p in self.received) or bool(assoc.acse.is_aborted())


class _ConnectFailure(logging.Handler):
    """pynetdicom logs, and does not raise, the OSError of a failed connect: keep its text to name the cause."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[tuple[int | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("TCP Initialisation Error"):
            self.lines.append((record.thread, message.split(":", 1)[-1].strip()))

    def cause(self, threads: set[int | None]) -> str | None:
        return next((text for thread, text in self.lines if thread in threads), None)


@contextlib.contextmanager
def associate(
    peer: Peer, contexts: Sequence[Any], *, roles: Sequence[Any] = (), handlers: Sequence[Any] = ()
) -> Iterator[tuple[Any, _Watch]]:
    """An established association with ``peer`` proposing ``contexts``, released on the way out.

    Raises:
        ClinicalConnectionError: nothing accepts TCP connections at the address.
        ClinicalTimeoutError: no TCP connection within ``connect_timeout``, or no answer to the
            association request within ``acse_timeout``.
        AssociationError: the peer rejected or aborted the association, or accepted none of the contexts.
    """
    from pynetdicom import AE, evt

    ae = AE(ae_title=peer.calling_aet)
    peer.configure(ae)
    ae.requested_contexts = list(contexts)
    watch = _Watch()
    hooks = [(evt.EVT_CONN_OPEN, watch.on_open), (evt.EVT_ACSE_RECV, watch.on_acse), *handlers]
    failures = _ConnectFailure()
    logger = logging.getLogger("pynetdicom.transport")
    logger.addHandler(failures)
    try:
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_aet, ext_neg=list(roles), evt_handlers=hooks)
    finally:
        logger.removeHandler(failures)
    if not assoc.is_established:
        raise _refusal(peer, assoc, watch, failures.cause({assoc.ident, assoc.dul.ident}), contexts)
    try:
        yield assoc, watch
    finally:
        if assoc.is_established:
            assoc.release()  # bounded by acse_timeout; pynetdicom aborts when the peer does not answer


def _refusal(peer: Peer, assoc: Any, watch: _Watch, cause: str | None, contexts: Sequence[Any]) -> ClinicalSystemError:
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    url = peer.url
    if not watch.connected:
        said = cause or "no connection"
        if "timed out" in said:
            return ClinicalTimeoutError(
                f"{url}: no TCP connection within {peer.connect_timeout:g} s ({said})",
                system="DIMSE",
                url=url,
                hint="check host and port and that no firewall drops the connection; or raise connect_timeout=",
            )
        return ClinicalConnectionError(
            f"cannot reach {url} ({said})",
            system="DIMSE",
            url=url,
            hint=f"is the PACS's DICOM port listening? check host and port (or ${ENV_DIMSE_HOST}, ${ENV_DIMSE_PORT})",
        )
    answers = [p for p in watch.received if isinstance(p, A_ASSOCIATE)]
    # The response as pynetdicom's ACSE kept it: the receive event can still be in flight on a busy machine.
    kept = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    if isinstance(kept, A_ASSOCIATE) and kept not in answers:
        answers.append(kept)
    rejection = next((p for p in answers if p.result in (0x01, 0x02)), None)
    if rejection is not None:
        reason = f"{rejection.result_str}, {rejection.source_str}: {rejection.reason_str}"
        return AssociationError(
            f"{url} rejected the association from calling AE title {peer.calling_aet!r} ({reason})",
            url=url,
            reason=reason,
            hint=f"check the called AE title ({peer.called_aet!r}) and that the PACS lists calling_aet "
            f"{peer.calling_aet!r} (with this host) among the modalities it accepts",
        )
    if answers and not assoc.accepted_contexts:
        names = sorted({_name(cx.abstract_syntax) for cx in contexts})
        return AssociationError(
            f"{url} accepted none of the presentation contexts proposed ({', '.join(names[:6])})",
            url=url,
            reason="no accepted presentation context",
            hint="the PACS does not offer these services or SOP classes to calling_aet: check its configuration",
        )
    if watch.peer_aborted(assoc):
        return AssociationError(
            f"{url} aborted the association request from {peer.calling_aet!r}", url=url, reason="aborted by the peer"
        )
    if not answers:
        return ClinicalTimeoutError(
            f"{url} did not answer the association request within {peer.acse_timeout:g} s",
            system="DIMSE",
            url=url,
            hint="is the port a DICOM port? raise acse_timeout= if the PACS is slow",
        )
    return AssociationError(f"{url} did not establish the association", url=url)


def require_context(peer: Peer, assoc: Any, sop_class: str, transfer_syntax: str | None = None, *, what: str) -> None:
    """Refuse, before sending anything, a request the association has no accepted context for."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class and (transfer_syntax is None or transfer_syntax in cx.transfer_syntax):
            return
    syntax = f" in transfer syntax {_name(transfer_syntax)}" if transfer_syntax else ""
    raise AssociationError(
        f"{peer.url} accepted no presentation context for {_name(sop_class)}{syntax} ({what})",
        url=peer.url,
        reason="no accepted presentation context",
        hint="the PACS does not accept this SOP class (or transfer syntax) from calling_aet",
    )


def status_category(code: int) -> str:
    """``"Success"``, ``"Pending"``, ``"Warning"``, ``"Failure"`` or ``"Cancel"``."""
    from pynetdicom.status import code_to_category

    return str(code_to_category(code))


def response_status(peer: Peer, service: str, status: pydicom.Dataset, assoc: Any, watch: _Watch, *, what: str) -> int:
    """The status code of one DIMSE response; no response, or a failure status, raises.

    Raises:
        AssociationError: the peer aborted the association instead of answering.
        ClinicalTimeoutError: no response within ``dimse_timeout``.
        DIMSEStatusError: a failure or cancel status.
    """
    if "Status" not in status:
        if watch.peer_aborted(assoc):
            raise AssociationError(
                f"{peer.url} aborted the association during {service} ({what})", url=peer.url, reason="aborted"
            )
        raise ClinicalTimeoutError(
            f"{peer.url} gave no {service} response within {peer.dimse_timeout:g} s ({what})",
            system="DIMSE",
            url=peer.url,
            hint="raise dimse_timeout= if the PACS is slow, or check that it is healthy",
        )
    code = int(status.Status)
    category = status_category(code)
    if category in ("Failure", "Cancel"):
        raise status_error(peer, service, code, what, comment=str(status.get("ErrorComment") or ""))
    return code


def status_error(peer: Peer, service: str, code: int, what: str, *, comment: str = "") -> DIMSEStatusError:
    """The typed error for a DIMSE failure status."""
    from pynetdicom import status as statuses

    table: Mapping[int, tuple[str, str]] = getattr(
        statuses, f"{_STATUS_TABLES.get(service, 'STORAGE')}_SERVICE_CLASS_STATUS", statuses.GENERAL_STATUS
    )
    category, description = table.get(code) or statuses.GENERAL_STATUS.get(code) or (status_category(code), "")
    said = f"{category}: {description}".rstrip(": ") + (f"; the PACS said {comment[:200]!r}" if comment else "")
    return DIMSEStatusError(
        f"{peer.url} answered {service} of {what} with status 0x{code:04X} ({said})",
        url=peer.url,
        service=service,
        status=code,
        hint=_STATUS_HINTS.get(code) or _SERVICE_HINTS.get(service),
    )


def _name(uid: str | None) -> str:
    from pydicom.uid import UID

    text = str(uid or "")
    name = UID(text).name if text else ""
    return name if name and name != text else text


def load_pynetdicom(feature: str) -> Any:
    """pynetdicom, set never to log identifiers: its defaults log every C-FIND/C-GET/C-MOVE identifier
    (PatientID, AccessionNumber …) at INFO, and okaflow's logs never carry patient identifiers.

    Raises:
        MissingExtraError: pynetdicom is not installed (``pip install 'okaflow[pacs]'``).
    """
    try:
        import pynetdicom
        from pynetdicom import _config
    except ImportError as exc:
        raise MissingExtraError("pacs", feature=feature, missing=exc.name or "pynetdicom") from None
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    return pynetdicom


def check_aet(value: str, name: str) -> str:
    """DICOM AE titles: 1 to 16 characters, no backslash or control characters, not only spaces."""
    if not value.strip() or len(value) > 16 or "\\" in value or any(ord(c) < 32 for c in value):
        raise ConfigurationError(
            f"{name} {value!r} is not a DICOM AE title",
            hint="1 to 16 characters, no backslash or control characters (tab, newline), not only spaces",
        )
    return value
