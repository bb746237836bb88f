"""``okaflow listen``: the study service on the command line (see :mod:`okaflow._listen`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

from rich.console import Console

from okaflow._cli_sinks import add_sink_flags, sinks_from_flags
from okaflow._constants import (
    ENV_FHIR_URL,
    LISTEN_AET,
    LISTEN_HOST,
    LISTEN_MAX_ATTEMPTS,
    LISTEN_PORT,
    LISTEN_RETRY_DELAY_S,
    LISTEN_SETTLE_S,
    LISTEN_WORKERS,
)
from okaflow._errors import ConfigurationError

__all__ = ["add_listen_parser", "listen_command"]


def add_listen_parser(
    sub: Any, add_backend_flags: Callable[[argparse.ArgumentParser, str | None], None], add_generator_flags: Any
) -> None:
    """The ``listen`` subcommand and its flags."""
    ls = sub.add_parser(
        "listen",
        help="receive studies over DICOM (C-STORE), run a workflow on each, publish the results",
        description="A DICOM Storage SCP that keeps every study in a spool folder, matches the patient on the "
        "FHIR server, runs the workflow with a bounded pool of workers and retries what failed for a reason "
        "that may pass. Stop with Ctrl-C or SIGTERM: running studies finish, queued ones wait in the spool.",
    )
    ls.add_argument("--spool", required=True, help="folder that keeps every received study and its runs")
    ls.add_argument("--host", default=LISTEN_HOST, help=f"address to listen on (default {LISTEN_HOST})")
    ls.add_argument("--port", type=int, default=LISTEN_PORT, help=f"DICOM port (default {LISTEN_PORT})")
    ls.add_argument("--aet", default=LISTEN_AET, help=f"our AE title (default {LISTEN_AET})")
    ls.add_argument("--allow-aet", action="append", metavar="AET", help="accept studies only from this AE (repeat)")
    ls.add_argument(
        "--fhir-url",
        help="FHIR server to match patients on ($OKAFLOW_FHIR_URL, else --push-fhir; token $OKAFLOW_FHIR_TOKEN)",
    )
    ls.add_argument("--identifier-system", help="match PatientID against Patient identifiers of this system only")
    ls.add_argument("--workflow", help="workflow for every study (default radiology-report)")
    ls.add_argument("--task", help="the clinical question asked of every study")
    add_backend_flags(ls, "evidence-only")
    add_generator_flags(ls)
    add_sink_flags(ls)
    ls.add_argument("--yes", action="store_true", help="publish without asking (unattended: say so explicitly)")
    ls.add_argument("--workers", type=int, default=LISTEN_WORKERS, help=f"studies at once (default {LISTEN_WORKERS})")
    ls.add_argument("--max-attempts", type=int, default=LISTEN_MAX_ATTEMPTS)
    ls.add_argument("--settle", type=float, default=LISTEN_SETTLE_S, help="quiet seconds before a study is complete")
    ls.add_argument("--retry-delay", type=float, default=LISTEN_RETRY_DELAY_S, help="first retry delay (doubles)")
    ls.add_argument("--status", action="store_true", help="list the spool's studies and their states, then exit")
    ls.add_argument("--retry", metavar="JOB", help="queue a failed study again, then exit (a running service takes it)")


def listen_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Serve until interrupted, or answer ``--status`` / ``--retry``."""
    from okaflow._cli import _backend_and_generator
    from okaflow._listen import ListenService, read_jobs

    if args.status:
        _print_jobs(read_jobs(args.spool), out)
        return 0
    if args.retry:  # a file change in the spool: no model, no servers needed
        job = ListenService(args.spool).retry(args.retry)
        out.print(f"job {job.id} queued again (a running okaflow listen takes it within seconds)")
        return 0
    if args.fhir_patient:
        raise ConfigurationError(
            "--fhir-patient does not apply to okaflow listen: each study's patient is matched on the FHIR server"
        )
    # The EHR the report goes to is the one the patient is matched on, unless told otherwise.
    fhir_url = args.fhir_url or os.environ.get(ENV_FHIR_URL) or args.push_fhir
    with contextlib.ExitStack() as stack:
        sinks = sinks_from_flags(args, stack)  # before a model is loaded: these flags can be refused
        backend, generator = _backend_and_generator(args, stack, backend_required=True)
        service = ListenService(
            args.spool,
            host=args.host,
            port=args.port,
            ae_title=args.aet,
            allowed_calling_aets=args.allow_aet,
            fhir=fhir_url,
            identifier_system=args.identifier_system,
            workflow=args.workflow,
            task=args.task,
            backend=backend,
            generator=generator,
            sinks=sinks,
            require_approval=not args.yes,
            workers=args.workers,
            max_attempts=args.max_attempts,
            settle_s=args.settle,
            retry_delay_s=args.retry_delay,
            on_job=lambda job: out.print(_job_line(job), highlight=False),
        )
        with service:
            out.print(
                f"[bold]okaflow listen[/bold]: {args.aet} on {args.host}:{args.port}, spool {args.spool} "
                f"({args.workers} worker(s); Ctrl-C stops)",
                highlight=False,
            )
            signal.signal(signal.SIGTERM, _interrupt)
            with contextlib.suppress(KeyboardInterrupt):
                service.serve_forever()
            out.print("stopping: running studies finish, queued ones stay in the spool")
    return 0


def _job_line(job: Any) -> str:
    # Job ids and error classes only: the console is a log, and logs never name patients.
    line = f"job {job.id}: {job.state.replace('_', ' ')}"
    if job.error and job.state in ("failed", "queued"):
        line += f" ({job.error['type']}; okaflow listen --spool ... --status)"
    return line


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the service the way Ctrl-C does


def _print_jobs(jobs: list[Any], out: Console) -> None:
    # Plain lines, never truncated: operators grep them and scripts read them.
    out.print("job\tstate\tinstances\tattempts\trun or error", highlight=False)
    for job in jobs:
        detail = job.run_dir or (f"{job.error['type']}: {job.error['message']}" if job.error else "")
        out.print(f"{job.id}\t{job.state}\t{job.received}\t{job.attempts}\t{detail}", highlight=False, soft_wrap=True)
