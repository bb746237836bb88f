"""Validating a bundle's shell and each entry's resource against one FHIR release's models.

The bundle is split so that each resource is validated on its own: a failure then carries the entry's
index and a JSON path (``entry[2].resource.valueQuantity.value``) built from pydantic's error location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pydantic

from okaflow.tools.fhir._models import FHIRVersion
from okaflow.tools.fhir._values import JSONObject

__all__ = ["EntryFailure", "Validation", "model_class", "validate_bundle"]

_MAX_LISTED_PROBLEMS = 3


@dataclass(frozen=True)
class EntryFailure:
    """Why one entry (``entry_index``) or the bundle shell (``entry_index`` None) failed the models."""

    entry_index: int | None
    path: str
    message: str


@dataclass
class Validation:
    """Models for the entries that validated, failures for those that did not."""

    version: FHIRVersion
    models: dict[int, Any] = field(default_factory=dict)
    failures: list[EntryFailure] = field(default_factory=list)

    @property
    def failed_entries(self) -> set[int | None]:
        return {f.entry_index for f in self.failures}


@lru_cache(maxsize=512)
def model_class(version: FHIRVersion, resource_type: str) -> Any:
    """The fhir.resources class for a resource type; R4 and R4B both use ``fhir.resources.R4B``."""
    if version == "R5":
        from fhir.resources import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def json_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """``entry[2].resource`` + ``('component', 0, 'valueQuantity')`` -> ``…component[0].valueQuantity``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "root":  # fhir_core's wrapper validators add a synthetic "root" step
            path += f".{part}" if path else part
    return path


def _describe(error: Any, resource_type: str, version: FHIRVersion) -> str:
    name = next((p for p in reversed(error["loc"]) if isinstance(p, str) and p != "root"), resource_type)
    if error["type"] == "extra_forbidden":
        return f"{name!r} is not an element here in FHIR {version}"
    if str(error["type"]).endswith("missing"):  # pydantic's "missing" and fhir_core's "…validation.missing"
        return f"required element {name!r} is missing"
    message = " ".join(str(error["msg"]).split())
    value = error.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool) and error["type"] != "missing":
        message += f" (got {str(value)[:40]!r})"
    return message


def _failures_from(
    exc: Exception, index: int | None, prefix: str, label: str, rtype: str, version: FHIRVersion
) -> EntryFailure:
    if not isinstance(exc, pydantic.ValidationError):
        return EntryFailure(index, prefix, f"{label} does not validate as FHIR {version}: {exc}")
    errors = exc.errors()
    first = errors[0]
    path = json_path(prefix, tuple(first["loc"]))
    message = f"{label} does not validate as FHIR {version}: {_describe(first, rtype, version)}"
    rest = [json_path(prefix, tuple(e["loc"])) for e in errors[1:]]
    if rest:
        listed = ", ".join(rest[:_MAX_LISTED_PROBLEMS])
        more = " …" if len(rest) > _MAX_LISTED_PROBLEMS else ""
        message += f" (and {len(rest)} more: {listed}{more})"
    return EntryFailure(index, path, message)


def _shell_failures(bundle: JSONObject, version: FHIRVersion) -> list[EntryFailure]:
    entries = bundle.get("entry") or []
    shell = {k: v for k, v in bundle.items() if k != "entry"}
    if entries:
        shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} for e in entries]
    try:
        model_class(version, "Bundle").model_validate(shell)
    except pydantic.ValidationError as exc:
        found: list[EntryFailure] = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            index = loc[1] if len(loc) > 1 and loc[0] == "entry" and isinstance(loc[1], int) else None
            message = f"Bundle does not validate as FHIR {version}: {_describe(error, 'Bundle', version)}"
            found.append(EntryFailure(index, json_path("", loc), message))
        return found
    return []


def validate_bundle(bundle: JSONObject, resources: list[tuple[int, JSONObject]], version: FHIRVersion) -> Validation:
    """Validate the Bundle shell and every ``(entry index, resource)`` with ``version``'s models."""
    result = Validation(version, failures=_shell_failures(bundle, version))
    for index, resource in resources:
        rtype = str(resource["resourceType"])
        prefix = f"entry[{index}].resource"
        label = f"{rtype}/{resource['id']}" if isinstance(resource.get("id"), str) else f"{rtype} (no id)"
        try:
            klass = model_class(version, rtype)
        except ValueError:
            result.failures.append(
                EntryFailure(index, f"{prefix}.resourceType", f"unknown resource type {rtype!r} in FHIR {version}")
            )
            continue
        try:
            result.models[index] = klass.model_validate(resource)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # ValidationError is a ValueError; fhir_core raises KeyError for an unknown contained type.
            result.failures.append(_failures_from(exc, index, prefix, label, rtype, version))
    return result
