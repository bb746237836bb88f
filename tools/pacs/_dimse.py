"""A DIMSE client for pulling from and storing to a PACS over classic DICOM networking, via pynetdicom.

C-ECHO, C-FIND (Study Root), C-GET, C-MOVE (to a storage SCP okaflow starts for the call) and C-STORE. Its
searches answer the same :class:`Study`/:class:`Series`/:class:`Instance` models as
:class:`~okaflow.tools.pacs.DICOMwebClient`, matched exactly the same way, and its downloads write the same
``<series UID>/<SOP instance UID>.dcm`` layout, so :func:`okaflow.pull_case` takes either client. Each call
opens its own association and releases it; every wait is bounded (see ``_association`` for how failures
become typed errors). Every DIMSE request is recorded in the audit trail; nothing is logged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from okaflow._audit import AuditAction, AuditTrail, watched
from okaflow._closing import Closing
from okaflow._constants import (
    DIMSE_ACSE_TIMEOUT_S,
    DIMSE_CALLING_AET,
    DIMSE_CONNECT_TIMEOUT_S,
    DIMSE_NETWORK_TIMEOUT_S,
    DIMSE_RETRIEVE_DEADLINE_S,
    DIMSE_TIMEOUT_S,
    ENV_DIMSE_AET,
    ENV_DIMSE_CALLING_AET,
    ENV_DIMSE_HOST,
    ENV_DIMSE_PORT,
)
from okaflow._errors import AssociationError, ConfigurationError
from okaflow.tools.pacs._association import (
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
    Peer,
    associate,
    check_aet,
    load_pynetdicom,
    require_context,
    response_status,
    status_category,
)
from okaflow.tools.pacs._dimse_find import (
    instances_query,
    series_query,
    studies_query,
)
from okaflow.tools.pacs._dimse_retrieve import InstanceReceiver, get_contexts, run_get, run_move, storage_scp
from okaflow.tools.pacs._models import (
    Instance,
    Series,
    Study,
    exact_study_keys,
    instance_from,
    series_from,
    study_from,
    study_matches,
)
from okaflow.tools.pacs._stow import DUPLICATE_SOP_INSTANCE

if TYPE_CHECKING:
    import pydicom

__all__ = ["DIMSEClient"]


class DIMSEClient(Closing):
    """Talks DIMSE to one PACS: C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE. A context manager.

    The PACS must know okaflow's AE title (``calling_aet``): most PACSs refuse associations from AE titles
    missing from their list of modalities, and send C-MOVE results only to a listed one (with its host and port).

    Args:
        host: The PACS's host name or address; default ``$OKAFLOW_DIMSE_HOST``.
        port: The PACS's DICOM port (often 104 or 11112); default ``$OKAFLOW_DIMSE_PORT``.
        called_aet: The PACS's AE title; default ``$OKAFLOW_DIMSE_AET``.
        calling_aet: okaflow's AE title, as the PACS lists it; default ``$OKAFLOW_DIMSE_CALLING_AET`` or
            ``"OKAFLOW"``. C-MOVE sends to this AE title.
        connect_timeout: Seconds to open the TCP connection.
        acse_timeout: Seconds to wait for the answer to an association request (and a release).
        dimse_timeout: Seconds to wait for each DIMSE response.
        network_timeout: Seconds an association may stay silent before it is aborted.
        audit: An :class:`~okaflow.AuditTrail` recording every request (also settable as ``.audit``).

    Raises:
        MissingExtraError: pynetdicom is not installed (``pip install 'okaflow[pacs]'``).
        ConfigurationError: no host, port or called AE title, or an AE title DICOM does not allow.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        called_aet: str | None = None,
        calling_aet: str | None = None,
        connect_timeout: float = DIMSE_CONNECT_TIMEOUT_S,
        acse_timeout: float = DIMSE_ACSE_TIMEOUT_S,
        dimse_timeout: float = DIMSE_TIMEOUT_S,
        network_timeout: float = DIMSE_NETWORK_TIMEOUT_S,
        audit: AuditTrail | None = None,
    ) -> None:
        load_pynetdicom("DIMSE")
        host = host or os.environ.get(ENV_DIMSE_HOST)
        port_text = port if port is not None else os.environ.get(ENV_DIMSE_PORT)
        called = called_aet or os.environ.get(ENV_DIMSE_AET)
        # An explicit calling_aet="" is refused below rather than replaced by the default.
        calling = calling_aet if calling_aet is not None else os.environ.get(ENV_DIMSE_CALLING_AET) or DIMSE_CALLING_AET
        if not host or port_text in (None, "") or not called:
            raise ConfigurationError(
                "a DIMSE PACS needs host, port and called_aet",
                hint=f"pass them, or set ${ENV_DIMSE_HOST}, ${ENV_DIMSE_PORT} and ${ENV_DIMSE_AET}",
            )
        try:
            number = int(port_text)
        except ValueError:
            raise ConfigurationError(f"the DIMSE port {port_text!r} is not a number") from None
        if not 0 < number < 65536:
            raise ConfigurationError(f"the DIMSE port {number} is not a TCP port (1-65535)")
        timeouts = {"connect": connect_timeout, "acse": acse_timeout, "dimse": dimse_timeout}
        for name, value in {**timeouts, "network": network_timeout}.items():
            if not value > 0:
                raise ConfigurationError(f"{name}_timeout must be a positive number of seconds, not {value}")
        self._peer = Peer(
            host=host,
            port=number,
            called_aet=check_aet(called, "called_aet"),
            calling_aet=check_aet(calling, "calling_aet"),
            connect_timeout=float(connect_timeout),
            acse_timeout=float(acse_timeout),
            dimse_timeout=float(dimse_timeout),
            network_timeout=float(network_timeout),
        )
        #: A trail of the client's own (site-wide) every request also goes to; ``okaflow.auditing`` adds the run's.
        self.audit = audit

    @property
    def url(self) -> str:
        """``dicom://AET@host:port``: how errors and ``pull.json`` name this PACS."""
        return self._peer.url

    @property
    def called_aet(self) -> str:
        """The PACS's AE title."""
        return self._peer.called_aet

    @property
    def calling_aet(self) -> str:
        """okaflow's AE title (and the C-MOVE destination)."""
        return self._peer.calling_aet

    def __repr__(self) -> str:
        p = self._peer
        return f"DIMSEClient({p.host!r}, {p.port}, called_aet={p.called_aet!r}, calling_aet={p.calling_aet!r})"

    def close(self) -> None:
        """Nothing to close: each call opens and releases its own association."""

    # -- C-ECHO -----------------------------------------------------------------------------------
    def echo(self) -> None:
        """Check that the PACS answers (C-ECHO): association, AE titles and DICOM port are right."""
        from pynetdicom import build_context

        with self._exchange("echo", "echo", [build_context(VERIFICATION)]) as (assoc, watch, entry):
            entry["status"] = response_status(self._peer, "C-ECHO", assoc.send_c_echo(), assoc, watch, what="echo")

    # -- C-FIND (Study Root) ----------------------------------------------------------------------
    def search_studies(
        self,
        *,
        patient_id: str | None = None,
        accession_number: str | None = None,
        study_uid: str | None = None,
        modality: str | None = None,
    ) -> list[Study]:
        """Studies matching every given key, exactly (C-FIND at study level).

        Values are matched literally: a ``*`` or ``?`` (C-FIND wildcards), a ``\\`` (a list of values) or an
        empty value is refused, and results whose PatientID, AccessionNumber or StudyInstanceUID differ
        from the asked value are dropped, so no other patient's study comes back.
        """
        asked = exact_study_keys(patient_id=patient_id, accession_number=accession_number, study_uid=study_uid)
        query, resource = studies_query(asked, modality)
        studies = [study_from(ds, self.url, system="DIMSE") for ds in self._find(query, resource)]
        return [s for s in studies if study_matches(s, asked)]

    def search_series(self, study_uid: str) -> list[Series]:
        """The series of one study (C-FIND at series level)."""
        query, resource = series_query(study_uid)
        found = [series_from(ds, self.url, study_uid, system="DIMSE") for ds in self._find(query, resource)]
        return [s for s in found if s.study_uid == study_uid]

    def search_instances(self, study_uid: str, series_uid: str | None = None) -> list[Instance]:
        """The instances of one study, or of one of its series (C-FIND at image level)."""
        query, resource = instances_query(study_uid, series_uid)
        found = [
            instance_from(ds, self.url, study_uid, series_uid, system="DIMSE") for ds in self._find(query, resource)
        ]
        return [i for i in found if i.study_uid == study_uid and series_uid in (None, i.series_uid)]

    def _find(self, query: pydicom.Dataset, resource: str) -> list[pydicom.Dataset]:
        from pynetdicom import build_context

        found = []
        with self._exchange("search", resource, [build_context(STUDY_ROOT_FIND)]) as (assoc, watch, entry):
            require_context(self._peer, assoc, STUDY_ROOT_FIND, what="C-FIND")
            what = f"a {query.QueryRetrieveLevel} query"
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
                code = response_status(self._peer, "C-FIND", status, assoc, watch, what=what)
                if status_category(code) == "Pending" and identifier is not None:
                    found.append(identifier)
            entry["status"] = code
            entry["detail"] = f"C-FIND: {len(found)} matches"
        return found

    # -- C-GET ------------------------------------------------------------------------------------
    def download_instances(self, instances: Sequence[Instance], folder: str | Path) -> list[Path]:
        """Retrieve instances (C-GET, one request each) into ``folder/<series UID>/<SOP instance UID>.dcm``.

        Returns:
            The files, in the order of ``instances``.
        """
        if not instances:
            return []
        receiver = InstanceReceiver({i.sop_instance_uid: i for i in instances}, Path(folder))
        with self._get_association(receiver, _resource(instances[0])) as (assoc, watch):
            for instance in instances:
                keys = {
                    "QueryRetrieveLevel": "IMAGE",
                    "StudyInstanceUID": instance.study_uid,
                    "SeriesInstanceUID": instance.series_uid,
                    "SOPInstanceUID": instance.sop_instance_uid,
                }
                sop = instance.sop_instance_uid
                with self._watch("retrieve", _resource(instance)) as entry:
                    entry["status"] = run_get(
                        self._peer, assoc, watch, keys, receiver, [sop], f"instance {sop}", DIMSE_RETRIEVE_DEADLINE_S
                    )
                    entry["detail"] = "C-GET"
        return receiver.paths([i.sop_instance_uid for i in instances])

    def retrieve_study(
        self, study_uid: str, folder: str | Path, *, deadline: float = DIMSE_RETRIEVE_DEADLINE_S
    ) -> list[Path]:
        """Retrieve a whole study with one C-GET into ``folder/<series UID>/<SOP instance UID>.dcm``.

        The study's instances are searched first (C-FIND), and every one of them must arrive.

        Args:
            study_uid: The Study Instance UID.
            folder: Where the files go.
            deadline: Seconds the whole retrieve may take.
        """
        instances = self.search_instances(study_uid)
        receiver = InstanceReceiver({i.sop_instance_uid: i for i in instances}, Path(folder))
        if not instances:
            return []
        keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid}
        order = [i.sop_instance_uid for i in instances]
        resource = f"studies/{study_uid}"
        with (
            self._get_association(receiver, resource) as (assoc, watch),
            self._watch("retrieve", resource) as entry,
        ):
            entry["status"] = run_get(self._peer, assoc, watch, keys, receiver, order, f"study {study_uid}", deadline)
            entry["detail"] = f"C-GET: {len(order)} instances"
        return receiver.paths(order)

    # -- C-MOVE -----------------------------------------------------------------------------------
    def move_study(
        self,
        study_uid: str,
        folder: str | Path,
        *,
        port: int,
        host: str = "127.0.0.1",
        deadline: float = DIMSE_RETRIEVE_DEADLINE_S,
    ) -> list[Path]:
        """Retrieve a whole study by C-MOVE to a storage SCP okaflow runs for the call.

        The SCP answers as ``calling_aet`` on ``host:port``, which must be where the PACS's modality entry
        for ``calling_aet`` points; it accepts only the study's instances (found by C-FIND first) and stops
        when the call returns. Files go to ``folder/<series UID>/<SOP instance UID>.dcm``.

        Args:
            study_uid: The Study Instance UID.
            folder: Where the files go.
            port: The port the PACS sends to (its modality entry for ``calling_aet``).
            host: The address to listen on; loopback by default (a PACS on another host needs one it reaches).
            deadline: Seconds the whole move may take, the last instance's arrival included.

        Raises:
            DIMSEStatusError: the PACS refused or failed the move (``0xA801``: it does not know
                ``calling_aet`` as a destination), or did not send every instance.
            ConfigurationError: ``host:port`` cannot be listened on.
        """
        from pynetdicom import build_context

        instances = self.search_instances(study_uid)
        if not instances:
            return []
        order = [i.sop_instance_uid for i in instances]
        receiver = InstanceReceiver({i.sop_instance_uid: i for i in instances}, Path(folder))
        classes = {i.sop_class_uid for i in instances}
        known = {c for c in classes if c} if None not in classes else set()
        with (
            storage_scp(self._peer, host, port, receiver, known),
            self._exchange("retrieve", f"studies/{study_uid}", [build_context(STUDY_ROOT_MOVE)]) as (
                assoc,
                watch,
                entry,
            ),
        ):
            require_context(self._peer, assoc, STUDY_ROOT_MOVE, what="C-MOVE")
            entry["status"] = run_move(self._peer, assoc, watch, study_uid, receiver, deadline)
            entry["detail"] = f"C-MOVE to {self.calling_aet}: {len(order)} instances"
        return receiver.paths(order)

    # -- C-STORE ----------------------------------------------------------------------------------
    def store_instances(self, datasets: Sequence[pydicom.Dataset]) -> list[str]:
        """Store data sets on the PACS (C-STORE), each in its own SOP class and transfer syntax.

        Returns:
            The stored SOP Instance UIDs, in order.

        Raises:
            ConfigurationError: a data set lacks SOPClassUID, SOPInstanceUID or file_meta.TransferSyntaxUID.
            AssociationError: the PACS accepts none of the contexts some data set needs (nothing is sent).
            DIMSEStatusError: the PACS answered a failure status, naming the SOP Instance UID.
        """
        from pynetdicom import build_context

        wanted = [_store_syntax(ds) for ds in datasets]
        if not wanted:
            return []
        pairs = list(dict.fromkeys((sop_class, syntax) for sop_class, _, syntax in wanted))
        if len(pairs) > 128:
            raise ConfigurationError(
                f"{len(pairs)} SOP class and transfer syntax pairs do not fit one association (128 at most)",
                hint="store the data sets in smaller batches",
            )
        contexts = [build_context(sop_class, syntax) for sop_class, syntax in pairs]
        stored: list[str] = []
        with self._association("store", _store_resource(datasets[0]), contexts) as (assoc, watch):
            for sop_class, sop, syntax in wanted:
                require_context(self._peer, assoc, sop_class, syntax, what=f"C-STORE of instance {sop}")
            for ds, (_, sop, _) in zip(datasets, wanted, strict=True):
                with self._watch("store", _store_resource(ds)) as entry:
                    if not assoc.is_established:  # the PACS aborted between two instances
                        raise AssociationError(
                            f"{self._peer.url} ended the association before instance {sop} was sent",
                            url=self._peer.url,
                            reason="aborted",
                        )
                    try:
                        status = assoc.send_c_store(ds)
                    except ValueError as exc:  # pynetdicom could not encode the data set
                        raise ConfigurationError(f"instance {sop} cannot be encoded for C-STORE ({exc})") from None
                    if int(status.get("Status", -1)) == DUPLICATE_SOP_INSTANCE:
                        # An archive that refuses a second copy already holds this instance (same UID).
                        entry["status"], entry["detail"] = DUPLICATE_SOP_INSTANCE, "already stored"
                    else:
                        entry["status"] = response_status(
                            self._peer, "C-STORE", status, assoc, watch, what=f"instance {sop}"
                        )
                stored.append(sop)
        return stored

    # -- internals --------------------------------------------------------------------------------
    def _watch(self, action: AuditAction, resource: str) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """One DIMSE request in the audit trail, with the DIMSE status it ended with."""
        return watched(self.audit, action, system="DIMSE", endpoint=self._peer.endpoint, resource=resource)

    @contextlib.contextmanager
    def _association(
        self, action: AuditAction, resource: str, contexts: Sequence[Any], **options: Any
    ) -> Iterator[tuple[Any, Any]]:
        """An association; one that cannot be opened is recorded as a failed ``action`` on ``resource``."""
        with contextlib.ExitStack() as stack:
            try:
                opened = stack.enter_context(associate(self._peer, contexts, **options))
            except Exception:
                # Re-raised inside the audit block, which records the failure and lets it go on.
                with self._watch(action, resource):
                    raise
            yield opened

    @contextlib.contextmanager
    def _exchange(
        self, action: AuditAction, resource: str, contexts: Sequence[Any]
    ) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
        """One association carrying one recorded DIMSE exchange."""
        with self._watch(action, resource) as entry, associate(self._peer, contexts) as (assoc, watch):
            yield assoc, watch, entry

    @contextlib.contextmanager
    def _get_association(self, receiver: InstanceReceiver, resource: str) -> Iterator[tuple[Any, Any]]:
        """A C-GET association, with okaflow as the storage SCP of the SOP classes asked for."""
        contexts, roles, handlers = get_contexts(receiver)
        with self._association("retrieve", resource, contexts, roles=roles, handlers=handlers) as (assoc, watch):
            require_context(self._peer, assoc, STUDY_ROOT_GET, what="C-GET")
            yield assoc, watch


def _resource(instance: Instance) -> str:
    return f"studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_instance_uid}"


def _store_syntax(ds: pydicom.Dataset) -> tuple[str, str, str]:
    """(SOP class, SOP instance, transfer syntax) of a data set to store; refused when one is missing."""
    sop = str(ds.get("SOPInstanceUID") or "")
    sop_class = str(ds.get("SOPClassUID") or "")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID") or "") if meta is not None else ""
    if not sop or not sop_class or not syntax:
        raise ConfigurationError(
            f"a data set to store (SOPInstanceUID {sop or 'missing'}) lacks "
            + ", ".join(
                n
                for n, v in (("SOPClassUID", sop_class), ("SOPInstanceUID", sop), ("TransferSyntaxUID", syntax))
                if not v
            ),
            hint="set ds.file_meta.TransferSyntaxUID (highdicom objects have it) and the SOP UIDs",
        )
    return sop_class, sop, syntax


def _store_resource(ds: pydicom.Dataset) -> str:
    study, series = ds.get("StudyInstanceUID", ""), ds.get("SeriesInstanceUID", "")
    return f"studies/{study}/series/{series}/instances/{ds.SOPInstanceUID}"
