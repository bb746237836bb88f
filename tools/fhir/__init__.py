"""FHIR bundles in, a typed patient context out."""

from okaflow.tools.fhir._models import *  # noqa: F403
