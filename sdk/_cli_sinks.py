"""The command line's report sinks: a folder, an EHR (FHIR), a PACS (DICOMweb or DIMSE).

``run``, ``approve``, ``resume`` and ``listen`` share these flags; ``approve`` and ``resume`` must be given
the flags the run was started with (the run records its sinks and refuses others).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from typing import Any

from okaflow._errors import ConfigurationError

__all__ = ["add_sink_flags", "dimse_peer", "sinks_from_flags"]

_DIMSE_PEER = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})$")


def add_sink_flags(p: argparse.ArgumentParser, *, again: bool = False) -> None:
    """``--publish-dir``, ``--push-fhir``, ``--push-dicomweb``, ``--push-dimse`` and their options."""
    same = " (the same as the run was started with)" if again else ""
    p.add_argument("--publish-dir", help=f"after approval, copy the report to this folder{same}")
    p.add_argument(
        "--push-fhir",
        metavar="URL",
        help=f"after approval, write a DiagnosticReport + images + Provenance to this FHIR server{same} "
        "(token: $OKAFLOW_FHIR_TOKEN)",
    )
    p.add_argument(
        "--fhir-patient", metavar="Patient/ID", help="the subject on that server (default: the pulled case's)"
    )
    p.add_argument(
        "--push-dicomweb",
        metavar="URL",
        help=f"after approval, store an SR + Secondary Captures in the source study by STOW-RS{same} "
        "(token: $OKAFLOW_DICOMWEB_TOKEN)",
    )
    p.add_argument("--push-dimse", metavar="AET@HOST:PORT", help=f"the same by C-STORE to this DICOM peer{same}")
    p.add_argument(
        "--sr-kind",
        choices=("comprehensive", "enhanced", "basic"),
        default="comprehensive",
        help="the SR the PACS gets (basic: Basic Text SR, for viewers that render no other)",
    )


def sinks_from_flags(args: argparse.Namespace, stack: contextlib.ExitStack[Any]) -> list[Any]:
    """The sinks the flags name, their clients closed with ``stack``."""
    from okaflow.tools.publish import DICOMSink, FHIRSink, FolderSink

    sinks: list[Any] = []
    if args.publish_dir:
        sinks.append(FolderSink(args.publish_dir))
    if args.push_fhir:
        from okaflow.tools.ehr import FHIRClient

        ehr = stack.enter_context(FHIRClient(args.push_fhir))
        sinks.append(FHIRSink(ehr, patient=args.fhir_patient))
    elif args.fhir_patient:
        raise ConfigurationError("--fhir-patient applies to --push-fhir")
    if args.push_dicomweb:
        from okaflow.tools.pacs import DICOMwebClient

        web = stack.enter_context(DICOMwebClient(args.push_dicomweb))
        sinks.append(DICOMSink(web, sr_kind=args.sr_kind))
    if args.push_dimse:
        from okaflow.tools.pacs import DIMSEClient

        aet, host, port = dimse_peer(args.push_dimse, "--push-dimse")
        dimse = stack.enter_context(DIMSEClient(host, port, called_aet=aet))
        sinks.append(DICOMSink(dimse, sr_kind=args.sr_kind))
    return sinks


def dimse_peer(value: str, flag: str) -> tuple[str, str, int]:
    """``AET@HOST:PORT`` as (AE title, host, port).

    Raises:
        ConfigurationError: ``value`` is not of that form.
    """
    peer = _DIMSE_PEER.match(value)
    if peer is None:
        raise ConfigurationError(f"{flag} {value!r} is not AET@HOST:PORT", hint=f"e.g. {flag} PACS@pacs.example:11112")
    return peer["aet"], peer["host"], int(peer["port"])
