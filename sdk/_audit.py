"""The audit trail: every read from and write to a clinical system, one JSON line each.

A trail is a JSONL file (``audit.jsonl``): in a pulled case folder for the reads that built it, and in
the run directory for everything the run read or wrote (a run over a pulled case starts with the
case's reads). Each line says who did what, when, where, to which resource, and how it ended::

    {"at": "2026-11-23T10:00:00.000000Z", "actor": "okaflow/0.4.0", "action": "read",
     "system": "FHIR", "endpoint": "http://ehr.example/fhir", "resource": "Patient/123",
     "outcome": "success", "status": 200}

The trail holds resource ids and UIDs (that is its job), so it lives with the case and the run,
never in application logs: okaflow's loggers name systems and counts, not patients.

Clients that talk to clinical systems take ``audit=`` (a trail of their own, e.g. site-wide) and record
each exchange in :func:`trail_for` that trail: inside :func:`auditing` (as :func:`okaflow.pull_case` and the
report sinks use it) the exchange goes to the block's trail as well.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from okaflow._types import utc_now
from okaflow._version import __version__

__all__ = ["AUDIT_LOG", "AuditAction", "AuditTrail", "auditing", "read_audit", "trail_for", "watched"]

AUDIT_LOG = "audit.jsonl"

#: What happened: ``read``/``search``/``retrieve`` take data out, ``create``/``update``/``transaction``/
#: ``store`` put data in, ``receive`` is a study sent to okaflow, ``echo`` a connectivity check, ``approve``
#: the human decision that allowed a run's writes.
AuditAction = Literal[
    "read", "search", "retrieve", "create", "update", "transaction", "store", "receive", "echo", "approve"
]

# One lock per trail file while anyone holds it (weakly kept: a service writes one trail per study).
_LOCKS: weakref.WeakValueDictionary[Path, threading.Lock] = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = path.resolve()
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


class AuditTrail:
    """Appends audit entries to one JSONL file; safe to share between threads.

    Args:
        path: The file (``<run dir>/audit.jsonl``); its folder is created on first write.
        actor: Who acts: default ``okaflow/<version>``; add a user or client id (``"okaflow/0.4.0 client=x"``).
        also: Other trails every entry is also written to (a site-wide trail beside the run's own).
    """

    def __init__(
        self, path: str | Path, *, actor: str | None = None, also: AuditTrail | Sequence[AuditTrail] | None = None
    ) -> None:
        self.path = Path(path)
        self.actor = actor or f"okaflow/{__version__}"
        self.also: tuple[AuditTrail, ...] = (also,) if isinstance(also, AuditTrail) else tuple(also or ())

    def __repr__(self) -> str:
        return f"AuditTrail({str(self.path)!r})"

    def record(
        self,
        action: AuditAction,
        *,
        system: str,
        endpoint: str,
        resource: str,
        outcome: Literal["success", "failure"] = "success",
        status: int | str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one entry.

        Args:
            action: What was done (see :data:`AuditAction`).
            system: ``"FHIR"``, ``"DICOMweb"``, ``"DIMSE"``.
            endpoint: The server: a base URL without credentials, or ``AET@host:port``.
            resource: Which resource: ``"Patient/123"``, ``"Observation?patient=123"``, ``"study 1.2.3"``.
            outcome: ``"success"`` or ``"failure"``.
            status: The HTTP status or DIMSE status the server answered, where there was one.
            detail: A short note (an error class and message, a count of instances).
        """
        entry: dict[str, Any] = {
            "at": utc_now(),
            "actor": self.actor,
            "action": action,
            "system": system,
            "endpoint": endpoint,
            "resource": resource,
            "outcome": outcome,
        }
        if status is not None:
            entry["status"] = status
        if detail:
            entry["detail"] = detail
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with _lock_for(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        for other in self.also:
            other.record(
                action,
                system=system,
                endpoint=endpoint,
                resource=resource,
                outcome=outcome,
                status=status,
                detail=detail,
            )

    @contextmanager
    def watch(self, action: AuditAction, *, system: str, endpoint: str, resource: str) -> Iterator[dict[str, Any]]:
        """Record the exchange inside the ``with`` block: success, or failure naming the error (re-raised).

        The block may set ``status`` and ``detail`` in the dict it is given.
        """
        extra: dict[str, Any] = {}
        try:
            yield extra
        except BaseException as exc:
            # An HTTP error's status_code, a DIMSE error's status.
            status = extra.get("status", getattr(exc, "status_code", None) or getattr(exc, "status", None))
            detail = extra.get("detail") or f"{type(exc).__name__}: {str(exc)[:300]}"
            self.record(
                action,
                system=system,
                endpoint=endpoint,
                resource=resource,
                outcome="failure",
                status=status,
                detail=detail,
            )
            raise
        self.record(
            action,
            system=system,
            endpoint=endpoint,
            resource=resource,
            status=extra.get("status"),
            detail=extra.get("detail"),
        )

    def extend(self, other: str | Path) -> int:
        """Append every entry of another trail (a pulled case's reads into its run's trail); how many."""
        source = Path(other)
        if not source.is_file():
            return 0
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        with _lock_for(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(line + "\n" for line in lines)
        return len(lines)


# The trail ``auditing`` opened for this thread or asyncio task: one client can serve several runs at once
# (a service's workers) and each run's requests still land in that run's trail.
_CURRENT: ContextVar[AuditTrail | None] = ContextVar("okaflow_audit_trail", default=None)


@contextmanager
def auditing(trail: AuditTrail) -> Iterator[AuditTrail]:
    """Record every clinical-system request made in this thread or task during the block in ``trail``
    (and, as well, in the trail each client was given)."""
    token = _CURRENT.set(trail)
    try:
        yield trail
    finally:
        _CURRENT.reset(token)


def trail_for(own: AuditTrail | None) -> AuditTrail | None:
    """The trail a client records a request in: the one :func:`auditing` opened, teed to the client's own."""
    current = _CURRENT.get()
    if current is None or current is own:
        return own
    if own is None:
        return current
    # The block's trail, with every trail it already tees to, and the client's own.
    return AuditTrail(current.path, actor=current.actor, also=(*current.also, own))


@contextmanager
def watched(
    own: AuditTrail | None, action: AuditAction, *, system: str, endpoint: str, resource: str
) -> Iterator[dict[str, Any]]:
    """:meth:`AuditTrail.watch` on the trail a client records in (:func:`trail_for`); with none, the block
    gets a dict that nothing reads."""
    trail = trail_for(own)
    if trail is None:
        yield {}
        return
    with trail.watch(action, system=system, endpoint=endpoint, resource=resource) as entry:
        yield entry


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """The entries of an audit trail file (a run directory or case folder is read at its ``audit.jsonl``)."""
    p = Path(path)
    if p.is_dir():
        p = p / AUDIT_LOG
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
