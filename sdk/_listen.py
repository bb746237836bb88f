"""``okaflow listen``: a study service. Studies arrive over DICOM, each is run through a workflow, results go out.

A :class:`ListenService` runs a DICOM Storage SCP (:class:`okaflow.tools.pacs.StorageSCP`) and keeps every
study it receives as a *job* in a spool folder, one folder per job, its state in ``job.json``::

    spool/jobs/<job id>/job.json             state, attempts, history, the study's UID
    spool/jobs/<job id>/case/images/...      the instances as received (Part-10 files, never altered)
    spool/jobs/<job id>/case/audit.jsonl     what was received and read for it (the runs' trails start here)
    spool/jobs/<job id>/runs/attempt-<n>/    one run directory per attempt

States: ``receiving`` → (sender done, nothing new for ``settle_s``) → ``queued`` → ``running`` →
``completed`` | ``awaiting_approval`` | back to ``queued`` (a retryable failure: server down, timeout) |
``failed`` (not retryable, or out of attempts; ``error`` says why). Nothing is deleted: a failed study
stays with its files, and ``okaflow listen --retry JOB`` (or :meth:`ListenService.retry`) queues it again.
After a crash, :meth:`ListenService.start` queues again whatever was ``running`` and settles whatever was
``receiving``, so no study that a sender was told is stored is lost.

Each job becomes a case: the patient's record from the FHIR server (matched by the DICOM PatientID,
exactly one Patient or the job fails saying so), or, with no FHIR server configured, a bundle of what the
DICOM header itself says (Patient and ImagingStudy) and nothing more. Jobs are named by a hash, so the
application log (logger ``okaflow.listen``) never carries a patient identifier or a study UID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from okaflow._audit import AUDIT_LOG, AuditTrail, auditing
from okaflow._closing import Closing
from okaflow._constants import (
    LISTEN_AET,
    LISTEN_HOST,
    LISTEN_MAX_ATTEMPTS,
    LISTEN_PORT,
    LISTEN_RETRY_DELAY_S,
    LISTEN_SETTLE_S,
    LISTEN_WORKERS,
    RUN_MANIFEST,
)
from okaflow._errors import (
    BackendConnectionError,
    BackendRateLimitedError,
    BackendServerError,
    BackendTimeoutError,
    ClinicalConnectionError,
    ClinicalStatusError,
    ClinicalTimeoutError,
    ConfigurationError,
    RunAwaitingApprovalError,
    RunDirectoryError,
)
from okaflow._files import write_atomic, write_text_atomic
from okaflow._types import utc_now

if TYPE_CHECKING:
    from okaflow.tools.ehr import FHIRClient
    from okaflow.tools.pacs import IncomingInstance, StorageSCP
    from okaflow.tools.publish import ReportSink

__all__ = ["JOB_FILE", "Job", "JobState", "ListenService", "read_jobs"]

log = logging.getLogger("okaflow.listen")

JOB_FILE = "job.json"
JobState = Literal["receiving", "queued", "running", "completed", "awaiting_approval", "failed"]
# How often the spool is re-read for jobs another process queued.
_RESCAN_S = 5.0
_RETRYABLE = (
    ClinicalConnectionError,
    ClinicalTimeoutError,
    BackendConnectionError,
    BackendTimeoutError,
    BackendServerError,
    BackendRateLimitedError,
)


@dataclass
class Job:
    """One received study and what became of it (``job.json``)."""

    id: str
    study_uid: str
    state: JobState = "receiving"
    received: int = 0
    first_received: str = field(default_factory=utc_now)
    attempts: int = 0
    next_attempt_at: float = 0.0
    run_dir: str | None = None
    error: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> Job:
        data = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, folder: Path) -> None:
        # A crash leaves the old state or the new one, never half of each.
        write_text_atomic(folder / JOB_FILE, json.dumps(self.__dict__, indent=2, sort_keys=True))


def read_jobs(spool: str | Path) -> list[Job]:
    """Every job in a spool folder, oldest first."""
    root = Path(spool) / "jobs"
    if not root.is_dir():
        return []
    jobs = []
    for folder in root.iterdir():
        if (folder / JOB_FILE).is_file():
            try:
                jobs.append(Job.read(folder))
            except (ValueError, TypeError, OSError):  # one damaged job.json must not stop the service
                log.error("job %s: job.json cannot be read; left as it is", folder.name)
    return sorted(jobs, key=lambda j: (j.first_received, j.id))


class ListenService(Closing):
    """Receives studies over DICOM and runs each through a workflow with a bounded pool of workers.

    ::

        service = ListenService(
            "spool", port=11112, fhir=lambda: FHIRClient("https://ehr.example/fhir", auth=smart),
            workflow="radiology-report", backend="openai", sinks=lambda: [DICOMSink(...)],
        )
        with service:
            service.serve_forever()        # until SIGINT/SIGTERM or service.close()

    Args:
        spool: The folder that keeps every job (created if missing; reused after a restart).
        host, port, ae_title: Where the Storage SCP listens (default ``127.0.0.1:11112``, ``OKAFLOW``).
        allowed_calling_aets: Only these peers may send studies (None: any peer that can connect).
        fhir: A FHIR base URL, or a factory of :class:`~okaflow.tools.ehr.FHIRClient` (called once per job, so
            each job's reads land in its own audit trail); None: the case holds only the DICOM header's facts.
        identifier_system: Match the DICOM PatientID against Patient identifiers of this system only.
        workflow, backend, task, generator: As :func:`okaflow.run` takes them.
        sinks: Report sinks shared by every job (each job's writes still go to its own audit trail), or a
            factory called once per job whose sinks are closed after it (their ``close()``, if any).
        require_approval: With sinks, each run waits for ``okaflow approve`` (default); False publishes
            unattended, which must be asked for explicitly.
        workers: Jobs run at once. max_attempts: attempts before a job is ``failed``.
        settle_s: Quiet time after the sender's association ends before a study counts as complete.
        retry_delay_s: Delay before the first retry of a retryable failure; doubles each attempt.
        on_job: Called with each job after every state change (progress displays, tests).
    """

    def __init__(
        self,
        spool: str | Path,
        *,
        host: str = LISTEN_HOST,
        port: int = LISTEN_PORT,
        ae_title: str = LISTEN_AET,
        allowed_calling_aets: Sequence[str] | None = None,
        fhir: str | Callable[[], FHIRClient] | None = None,
        identifier_system: str | None = None,
        workflow: str | None = None,
        backend: Any = None,
        task: str | None = None,
        generator: Any = "default",
        sinks: Sequence[ReportSink] | Callable[[], Sequence[ReportSink]] = (),
        require_approval: bool = True,
        workers: int = LISTEN_WORKERS,
        max_attempts: int = LISTEN_MAX_ATTEMPTS,
        settle_s: float = LISTEN_SETTLE_S,
        retry_delay_s: float = LISTEN_RETRY_DELAY_S,
        on_job: Callable[[Job], None] | None = None,
    ) -> None:
        if workers < 1 or max_attempts < 1 or settle_s < 0 or retry_delay_s < 0:
            raise ConfigurationError("workers and max_attempts must be 1 or more; settle_s and retry_delay_s 0 or more")
        self.spool = Path(spool)
        self.address = (host, port, ae_title)
        self.allowed_calling_aets = allowed_calling_aets
        self.fhir = fhir
        self.identifier_system = identifier_system
        self.case_options = {"workflow": workflow, "task": task}
        self.run_options: dict[str, Any] = {
            "backend": backend,
            "generator": generator,
            "require_approval": require_approval,
        }
        self.sinks = sinks
        self.workers, self.max_attempts = workers, max_attempts
        self.settle_s, self.retry_delay_s = settle_s, retry_delay_s
        self.on_job = on_job
        self._lock = threading.Lock()
        self._receiving: dict[str, str] = {}  # study UID -> the job receiving it
        self._last_arrival: dict[str, float] = {}  # job -> monotonic time of its last instance
        self._open: dict[int, set[str]] = {}  # association -> jobs it sent to
        self._running: dict[str, Future[None]] = {}
        self._writing: dict[str, int] = {}  # job -> instances being written now
        self._queued: dict[str, Job] = {}  # kept in memory: a spool of thousands of finished jobs is not re-read
        self._stop = threading.Event()
        self._scp: StorageSCP | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> ListenService:
        """Recover the spool (see the module docstring), start the SCP, the dispatcher and the workers."""
        from okaflow.tools.pacs import StorageSCP

        (self.spool / "jobs").mkdir(parents=True, exist_ok=True)
        for job in read_jobs(self.spool):
            if job.state == "running":  # the process died mid-run: the attempt counts, the study runs again
                job.history.append({"attempt": job.attempts, "ended": utc_now(), "outcome": "interrupted"})
                self._set(job, "queued")
            elif job.state == "receiving":  # its sender is gone: settle it from now (a resend joins it)
                self._last_arrival[job.id] = time.monotonic()
                self._receiving[job.study_uid] = job.id
            elif job.state == "queued":
                self._queued[job.id] = job
        host, port, aet = self.address
        self._scp = StorageSCP(
            self._receive,
            on_association_end=self._association_ended,
            host=host,
            port=port,
            ae_title=aet,
            allowed_calling_aets=self.allowed_calling_aets,
        )
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="okaflow-listen")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="okaflow-listen-dispatch", daemon=True)
        self._dispatcher.start()
        log.info("listening as %s on %s:%d, %d worker(s)", aet, host, port, self.workers)
        return self

    def __enter__(self) -> ListenService:
        return self.start() if self._scp is None else self

    def serve_forever(self) -> None:
        """Block until :meth:`close` is called (or the process is interrupted)."""
        self._stop.wait()

    def close(self, *, wait: bool = True) -> None:
        """Stop taking studies, then let running jobs finish (``wait``); queued jobs stay queued on disk."""
        self._stop.set()
        scp, dispatcher, pool = self._scp, self._dispatcher, self._pool
        self._scp = self._dispatcher = self._pool = None
        if scp is not None:
            scp.close()
        if dispatcher is not None:
            dispatcher.join()
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    # -- receiving (SCP threads) ------------------------------------------------------------------
    def _receive(self, instance: IncomingInstance) -> None:
        with self._lock:
            job_id = self._receiving.get(instance.study_uid)
            if job_id is None:
                job = self._new_job(instance.study_uid)
                job_id = job.id
                self._receiving[instance.study_uid] = job_id
            self._open.setdefault(instance.association, set()).add(job_id)
            self._last_arrival[job_id] = time.monotonic()
            # An aborted association can end while this write is still going: the job is not settled meanwhile.
            self._writing[job_id] = self._writing.get(job_id, 0) + 1
        folder = self._job_dir(job_id)
        try:
            self._write_instance(folder, instance)
        finally:
            with self._lock:
                self._writing[job_id] -= 1
                if not self._writing[job_id]:
                    del self._writing[job_id]
                self._last_arrival[job_id] = time.monotonic()
        AuditTrail(folder / "case" / AUDIT_LOG).record(
            "receive",
            system="DIMSE",
            endpoint=f"{instance.calling_aet}@{instance.peer}",
            resource=f"study {instance.study_uid} instance {instance.sop_instance_uid}",
        )

    @staticmethod
    def _write_instance(folder: Path, instance: IncomingInstance) -> None:
        from okaflow.tools.pacs._models import instance_file

        target = instance_file(folder / "case" / "images", instance.series_uid, instance.sop_instance_uid)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, instance.data)  # a resent instance replaces its earlier copy

    def _association_ended(self, association: int) -> None:
        with self._lock:
            for job_id in self._open.pop(association, set()):
                self._last_arrival[job_id] = time.monotonic()

    def _new_job(self, study_uid: str) -> Job:
        digest = hashlib.sha256(study_uid.encode()).hexdigest()[:12]
        job = Job(id=f"{digest}-{time.time_ns() // 1_000_000:x}", study_uid=study_uid)
        folder = self._job_dir(job.id)
        folder.mkdir(parents=True)
        job.write(folder)
        log.info("job %s: receiving a study", job.id)
        return job

    # -- dispatching ------------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        rescanned = time.monotonic()
        while not self._stop.wait(0.1):
            try:
                if time.monotonic() - rescanned > _RESCAN_S:
                    rescanned = time.monotonic()
                    self._adopt_queued()
                self._dispatch_once()
            except Exception:  # the loop must survive anything: jobs stay on disk and are retried
                log.exception("dispatcher error")

    def _adopt_queued(self) -> None:
        """Take jobs queued by another process (``okaflow listen --retry``) into this one's queue."""
        for job in read_jobs(self.spool):
            with self._lock:
                if job.state == "queued" and job.id not in self._queued and job.id not in self._running:
                    self._queued[job.id] = job

    def _dispatch_once(self) -> None:
        """Settle complete studies and start queued jobs that are due, up to ``workers`` at once (the
        dispatcher thread alone calls this)."""
        now = time.monotonic()
        with self._lock:
            busy = {j for jobs in self._open.values() for j in jobs} | set(self._writing)
            settled = [j for j, at in self._last_arrival.items() if j not in busy and now - at >= self.settle_s]
            # Closed in the same step as chosen: an instance arriving from now on opens a new job instead
            # of joining one that is being queued (or is already running).
            studies = {j: s for s, j in self._receiving.items() if j in settled}
            self._receiving = {s: j for s, j in self._receiving.items() if j not in studies}
            for job_id in settled:
                del self._last_arrival[job_id]
            self._running = {j: f for j, f in self._running.items() if not f.done()}
        for job_id in settled:
            try:
                self._settle(job_id)
            except Exception:  # this job goes back to receiving and is tried again; the others go on
                log.exception("job %s: could not be queued", job_id)
                with self._lock:
                    self._last_arrival[job_id] = time.monotonic()
                    if job_id in studies:
                        self._receiving.setdefault(studies[job_id], job_id)
        wall = time.time()
        with self._lock:
            due = sorted(
                (j for j in self._queued.values() if j.next_attempt_at <= wall and j.id not in self._running),
                key=lambda j: (j.first_received, j.id),
            )
        for job in due:
            if len(self._running) >= self.workers or self._pool is None or self._stop.is_set():
                break
            job.attempts += 1
            self._set(job, "running")
            self._running[job.id] = self._pool.submit(self._work, job.id)

    def _settle(self, job_id: str) -> None:
        folder = self._job_dir(job_id)
        job = Job.read(folder)
        job.received = sum(1 for _ in (folder / "case" / "images").rglob("*.dcm"))
        self._set(job, "queued")
        log.info("job %s: study complete (%d instances), queued", job.id, job.received)

    def retry(self, job_id: str) -> Job:
        """Queue a ``failed`` job again now (its attempts start over).

        Raises:
            ConfigurationError: there is no such job, or it has not failed.
        """
        if not (self._job_dir(job_id) / JOB_FILE).is_file():
            raise ConfigurationError(
                f"no job {job_id!r} in {self.spool}", hint=f"okaflow listen --spool {self.spool} --status lists them"
            )
        job = Job.read(self._job_dir(job_id))
        if job.state != "failed":
            raise ConfigurationError(f"job {job_id} is {job.state}, not failed", hint="only failed jobs are retried")
        job.attempts, job.next_attempt_at, job.error = 0, 0.0, None
        self._set(job, "queued")
        return job

    # -- one job (worker threads) -----------------------------------------------------------------
    def _work(self, job_id: str) -> None:
        folder = self._job_dir(job_id)
        job = Job.read(folder)
        started = utc_now()
        log.info("job %s: attempt %d of %d", job.id, job.attempts, self.max_attempts)
        try:
            result = self._run_job(job, folder)
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": str(exc), "hint": getattr(exc, "hint", None)}
            retryable = isinstance(exc, _RETRYABLE) or (
                isinstance(exc, ClinicalStatusError) and (exc.status_code >= 500 or exc.status_code == 429)
            )
            job.history.append(
                {"attempt": job.attempts, "started": started, "ended": utc_now(), "outcome": "error", **error}
            )
            job.error = error
            if retryable and job.attempts < self.max_attempts:
                job.next_attempt_at = time.time() + self.retry_delay_s * 2 ** (job.attempts - 1)
                self._set(job, "queued")
                log.warning("job %s: %s, will retry", job.id, error["type"])
            else:
                self._set(job, "failed")
                log.error("job %s: failed (%s) after %d attempt(s)", job.id, error["type"], job.attempts)
            return
        job.run_dir = str(result.run_dir)
        job.error = None
        job.history.append({"attempt": job.attempts, "started": started, "ended": utc_now(), "outcome": result.status})
        self._set(job, result.status)
        log.info("job %s: %s", job.id, result.status.replace("_", " "))

    def _run_job(self, job: Job, folder: Path) -> Any:
        """Resume the job's run where an earlier attempt left it, else build the case and start one.

        Resuming keeps the run's identity, so sinks that already wrote (before a later sink or the process
        failed) recognise their own writes and do not repeat them.
        """
        from okaflow._listen_case import write_job_case
        from okaflow._record import final_state, read_manifest
        from okaflow._resume import resume
        from okaflow._run import run

        case_dir = folder / "case"
        with contextlib.ExitStack() as stack:
            sinks = self._job_sinks(stack)
            previous = Path(job.run_dir) if job.run_dir else None
            if previous is not None and (previous / RUN_MANIFEST).is_file():
                try:
                    return resume(
                        previous,
                        case=case_dir,
                        sinks=sinks,
                        backend=self.run_options["backend"],
                        generator=self.run_options["generator"],
                    )
                except RunAwaitingApprovalError as waiting:
                    # Resume does not answer the gate: the run waiting there is the job's outcome, not a second run.
                    return waiting.result
                except RunDirectoryError:
                    if final_state(previous, read_manifest(previous)):
                        raise  # the resumed run itself failed (a corrupt run directory): the job fails
                # No checkpoint: it stopped before its first step, so it starts afresh.
            fhir = _fhir_client(self.fhir)
            if fhir is None:
                write_job_case(case_dir, job.id, None, self.identifier_system, **self.case_options)
            else:
                with fhir, auditing(AuditTrail(case_dir / AUDIT_LOG)):
                    write_job_case(case_dir, job.id, fhir, self.identifier_system, **self.case_options)
            out = folder / "runs" / f"attempt-{len(job.history) + 1}"
            # Recorded before the run starts: a retry, or a restart after a crash, resumes this run.
            job.run_dir = str(out)
            job.write(folder)
            return run(case_dir, out=out, force=True, sinks=sinks, **self.run_options)

    def _job_sinks(self, stack: contextlib.ExitStack[Any]) -> list[ReportSink]:
        """The sinks for one job; those a factory made are closed after it (their ``close()``, if any)."""
        if not callable(self.sinks):
            return list(self.sinks)
        sinks = list(self.sinks())
        for sink in sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                stack.callback(close)
        return sinks

    # -- internals --------------------------------------------------------------------------------
    def _job_dir(self, job_id: str) -> Path:
        return self.spool / "jobs" / job_id

    def _set(self, job: Job, state: JobState) -> None:
        job.state = state
        job.write(self._job_dir(job.id))
        with self._lock:
            if state == "queued":
                self._queued[job.id] = job
            else:
                self._queued.pop(job.id, None)
        if self.on_job is not None:
            try:
                self.on_job(job)
            except Exception:  # a progress display must not stop a study
                log.exception("on_job callback failed for job %s", job.id)


def _fhir_client(spec: str | Callable[[], FHIRClient] | None) -> FHIRClient | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        from okaflow.tools.ehr import FHIRClient

        return FHIRClient(spec)
    return spec()
