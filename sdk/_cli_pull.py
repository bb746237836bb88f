"""``okaflow pull``: a case folder from the EHR and the PACS, on the command line (see :mod:`okaflow._pull`)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from rich.console import Console

from okaflow._cli_sinks import dimse_peer
from okaflow._errors import ConfigurationError

__all__ = ["add_pull_parser", "pull_command"]


def add_pull_parser(sub: Any) -> None:
    """The ``pull`` subcommand and its flags."""
    p = sub.add_parser(
        "pull",
        help="build a case folder from a patient's FHIR record and their studies on the PACS",
        description="Pull one patient (--patient, or --mrn looked up on the FHIR server) with their studies, or "
        "one study (--accession or --study-uid) with its patient's record, into a new case folder that runs, "
        "replays and exports without the servers. Every request goes into the folder's audit.jsonl.",
    )
    p.add_argument("--out", required=True, help="a new or empty folder for the case")
    p.add_argument("--fhir-url", help="the FHIR server ($OKAFLOW_FHIR_URL; token $OKAFLOW_FHIR_TOKEN)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", metavar="ID", help="the Patient's id on the FHIR server")
    who.add_argument("--mrn", help="a Patient identifier value (e.g. the MRN), looked up on the FHIR server")
    who.add_argument("--accession", help="one study, by its accession number")
    who.add_argument("--study-uid", help="one study, by its Study Instance UID")
    p.add_argument("--identifier-system", help="the identifier system of --mrn / the PACS's PatientID")
    p.add_argument("--dicomweb", metavar="URL", help="the PACS's DICOMweb root ($OKAFLOW_DICOMWEB_TOKEN for a token)")
    p.add_argument("--dimse", metavar="AET@HOST:PORT", help="the PACS over DIMSE (C-FIND, C-GET)")
    p.add_argument("--task", help="the clinical question the case carries")
    p.add_argument("--workflow", help="the workflow the case names")
    p.add_argument("--max-instances", type=int, help="refuse to copy more DICOM instances than this")
    p.add_argument("--lenient", action="store_true", help="skip invalid FHIR entries (listed as warnings)")


def pull_command(args: argparse.Namespace, out: Console) -> int:
    """Pull, then say what the case holds and what to do next."""
    from okaflow._pull import patient_for_identifier, pull_case, pull_study
    from okaflow.tools.ehr import FHIRClient
    from okaflow.tools.pacs import DICOMwebClient, DIMSEClient

    if args.dicomweb and args.dimse:
        raise ConfigurationError("name one PACS: --dicomweb or --dimse")
    with contextlib.ExitStack() as stack:
        fhir = stack.enter_context(FHIRClient(args.fhir_url))
        pacs: dict[str, Any] = {}
        if args.dicomweb:
            pacs["dicomweb"] = stack.enter_context(DICOMwebClient(args.dicomweb))
        elif args.dimse:
            aet, host, port = dimse_peer(args.dimse, "--dimse")
            pacs["dimse"] = stack.enter_context(DIMSEClient(host, port, called_aet=aet))
        options: dict[str, Any] = {"task": args.task, "workflow": args.workflow, "strict": not args.lenient}
        if args.max_instances is not None:
            options["max_instances"] = args.max_instances
        if args.accession or args.study_uid:
            if not pacs:
                raise ConfigurationError("--accession and --study-uid need a PACS: --dicomweb URL or --dimse")
            case = pull_study(
                accession_number=args.accession,
                study_uid=args.study_uid,
                fhir=fhir,
                folder=args.out,
                identifier_system=args.identifier_system,
                **pacs,
                **options,
            )
        else:
            patient = args.patient or patient_for_identifier(fhir, args.mrn, args.identifier_system)
            case = pull_case(
                patient, fhir=fhir, folder=args.out, identifier_system=args.identifier_system, **pacs, **options
            )
    out.print(f"pulled case [cyan]{case.id}[/cyan] → {args.out}", highlight=False)
    out.print(f"  {len(case.patient.observations)} observations, {len(case.images)} image(s)", highlight=False)
    for warning in case.warnings:
        out.print(f"  [yellow]warning[/yellow] {warning}", highlight=False)
    out.print(f"  next: okaflow run {args.out}", highlight=False)
    return 0
