"""De-identification for sharing case studies: DICOM (PS3.15 basic profile), FHIR bundles, free text.

One :class:`Pseudonymizer` (a secret key and a date shift) per case or cohort makes every replacement
consistent across files — DICOM and FHIR identifiers still match, UIDs still link, intervals hold —
and :func:`find_leaks` searches the result for any original that survived. The DICOM profile's
action table comes from the ``deid`` extra (``pip install 'okaflow[deid]'``).
"""

from okaflow.tools.deid._case import DeidentifiedCase, deidentify_case, find_leaks
from okaflow.tools.deid._dicom import PROFILE_EDITION, deidentify_dicom
from okaflow.tools.deid._fhir import deidentify_bundle
from okaflow.tools.deid._pseudonyms import Pseudonymizer

__all__ = [
    "PROFILE_EDITION",
    "DeidentifiedCase",
    "Pseudonymizer",
    "deidentify_bundle",
    "deidentify_case",
    "deidentify_dicom",
    "find_leaks",
]
