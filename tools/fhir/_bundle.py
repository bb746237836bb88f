"""Loading a FHIR bundle: read, detect the release, validate entry by entry, index references.

Every entry is validated on its own with fhir.resources (R5: ``fhir.resources``; R4 and R4B:
``fhir.resources.R4B``), so a broken entry is reported with its exact JSON path, and with ``strict=False``
it is skipped and listed in ``warnings`` instead. How the release is chosen is described in ``_detect``.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from okaflow._errors import FHIRParseError
from okaflow.tools.fhir._detect import declared_version, shape_versions
from okaflow.tools.fhir._models import FHIRVersion
from okaflow.tools.fhir._references import (
    BundleEntry,
    ReferenceIndex,
    ResolvedReference,
    iter_references,
    reference_target_type,
)
from okaflow.tools.fhir._validate import EntryFailure, Validation, validate_bundle
from okaflow.tools.fhir._values import JSONObject, as_list, concept_text

__all__ = ["BundleSource", "ParsedBundle", "dumps_fhir_json", "load_bundle", "read_fhir_json"]

BundleSource = str | Path | bytes | JSONObject

# Bundle types whose entries legitimately carry no resource (responses, deletes in a history).
_RESOURCELESS_OK = frozenset({"transaction-response", "batch-response", "history", "transaction", "batch"})


@dataclass(frozen=True)
class ParsedBundle:
    """A validated bundle: its entries, the release it was read as, and everything worth a warning.

    Attributes:
        version: the release the entries were validated against (``"R4"`` and ``"R4B"`` both use R4B models).
        version_reason: why that release was chosen, in words (for logs and error hints).
        bundle_type: ``Bundle.type`` (``"collection"`` for a bare Patient wrapped by the loader).
        source: the file path, or ``<bytes>`` / ``<dict>`` / ``<json text>``.
        entries: the usable entries, in bundle order, one per ``Type/id`` (the first wins).
        warnings: skipped entries, external references, server OperationOutcome issues, duplicates.
        strict: whether problems raise (True) or are skipped with a warning (False); the patient context
            follows the same setting.
    """

    version: FHIRVersion
    version_reason: str
    bundle_type: str
    source: str
    entries: tuple[BundleEntry, ...]
    warnings: tuple[str, ...]
    strict: bool = True
    _index: ReferenceIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", ReferenceIndex(self.entries))

    def of_type(self, *resource_types: str) -> list[BundleEntry]:
        """Entries whose resource is one of ``resource_types``, in bundle order."""
        return [e for e in self.entries if e.resource_type in resource_types]

    @property
    def patients(self) -> list[BundleEntry]:
        return self.of_type("Patient")

    def get(self, key: str) -> BundleEntry | None:
        """The entry with this ``Type/id`` key, if any."""
        return next((e for e in self.entries if e.key == key), None)

    def resolve(self, reference: JSONObject | str, referrer: BundleEntry | None) -> ResolvedReference | None:
        """Resolve a Reference by the rules in ``_references``; None when it points outside the bundle."""
        return self._index.resolve(reference, referrer)


def load_bundle(source: BundleSource, *, version: FHIRVersion | None = None, strict: bool = True) -> ParsedBundle:
    """Read and validate a FHIR bundle.

    Accepts any ``Bundle.type`` (collection, searchset such as ``Patient/$everything``, transaction,
    batch, their responses, document, message, history). A bare Patient resource is accepted as a
    one-entry collection (with a warning); any other bare resource is an error, and a bare
    OperationOutcome (a server's error answer) raises with the server's diagnostics.

    Args:
        source: a path, JSON text (a ``str`` starting with ``{``), UTF-8 bytes, or a parsed dict (copied,
            never modified). ``.gz`` files are decompressed.
        version: ``"R4"``, ``"R4B"`` or ``"R5"`` to skip detection (see ``_detect`` for the rule).
        strict: raise on the first invalid entry (True), or skip invalid entries and record each in
            ``warnings`` (False).

    Returns:
        The parsed bundle; ``warnings`` lists anything skipped or left unresolved.

    Raises:
        FHIRParseError: unreadable file, invalid JSON (line and column), not a Bundle, or (strict) an entry
            that fails the FHIR model; the message names the file and the JSON path.
    """
    name, data = _read_source(source)
    bundle, warnings = _as_bundle(data, name)
    bundle_type = str(bundle.get("type") or "collection")
    entries_json = _entries_json(bundle, name)
    resources = [(i, e["resource"]) for i, e in enumerate(entries_json) if "resource" in e]
    chosen, reason, validation = _choose_version(bundle, resources, version)
    # One failure per entry (its first); a failure outside every entry (Bundle.type, say) is always fatal.
    failures: dict[int | None, EntryFailure] = {}
    for failure in validation.failures:
        failures.setdefault(failure.entry_index, failure)
    if (bad := failures.get(None)) is not None:
        raise FHIRParseError(
            bad.message, source=name, location=bad.path, hint=f"fix the Bundle itself; {_version_hint(chosen, reason)}"
        )
    if failures and strict:
        first_index = min(i for i in failures if i is not None)
        first = failures[first_index]
        others = [f"entry[{i}]" for i in sorted(i for i in failures if i is not None and i != first_index)]
        more = f"; also failing: {', '.join(others[:5])}{' …' if len(others) > 5 else ''}" if others else ""
        raise FHIRParseError(
            first.message + more,
            source=name,
            location=first.path,
            hint="fix that element, or load with strict=False (CLI: --lenient) to skip invalid entries "
            f"(each is then listed in warnings); {_version_hint(chosen, reason)}",
        )
    warnings.extend(f"skipped entry[{f.entry_index}]: {f.message} (at {f.path})" for f in failures.values())
    entries = _make_entries(entries_json, validation, bundle_type, warnings)
    warnings.extend(_outcome_warnings(bundle, entries))
    warnings.extend(_external_reference_warnings(entries))
    return ParsedBundle(chosen, reason, bundle_type, name, entries, tuple(warnings), strict)


def _read_source(source: BundleSource) -> tuple[str, Any]:
    if isinstance(source, dict):
        return "<dict>", copy.deepcopy(source)
    if isinstance(source, bytes):
        return "<bytes>", _parse_json(_decode(source, "<bytes>"), "<bytes>")
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        return "<json text>", _parse_json(source, "<json text>")
    path = Path(source)
    name = str(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise FHIRParseError("file not found", source=name, hint="check the path") from None
    except IsADirectoryError:
        raise FHIRParseError("is a directory, not a bundle file", source=name, hint="pass the JSON file") from None
    except (OSError, EOFError) as exc:
        raise FHIRParseError(f"cannot read file: {exc}", source=name, hint="check the file") from None
    return name, _parse_json(_decode(raw, name), name)


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM is common in Windows exports and harmless
    except UnicodeDecodeError as exc:
        raise FHIRParseError(
            f"not UTF-8 text (byte {exc.start})", source=name, hint="FHIR JSON must be UTF-8 encoded"
        ) from None


_DECIMAL_MARK = re.compile(r'"\\u0000decimal(\d+)\\u0000"')


def dumps_fhir_json(data: Any, *, indent: int | None = 2) -> str:
    """JSON text with ``Decimal`` values written as the numbers they are, digit for digit."""
    decimals: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            decimals.append(str(value))
            return f"\x00decimal{len(decimals) - 1}\x00"
        raise TypeError(f"{type(value).__name__} is not JSON")

    text = json.dumps(data, indent=indent, ensure_ascii=False, default=mark)
    # One pass over the text (a replace per decimal grew with the square of a large record's size).
    return _DECIMAL_MARK.sub(lambda m: decimals[int(m[1])], text)


def read_fhir_json(path: str | Path) -> Any:
    """A FHIR JSON file as the loader reads it: UTF-8 with or without a BOM, decimals as ``Decimal`` (so
    :func:`dumps_fhir_json` writes them back digit for digit), typed errors naming the file and place.

    Raises:
        FHIRParseError: The file cannot be read, is not UTF-8, or is not JSON.
    """
    return _read_source(Path(path))[1]


def _parse_json(text: str, name: str) -> Any:
    try:
        # Decimal keeps FHIR decimals as written ("1.40" stays 1.40) for the models to validate.
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise FHIRParseError(
            f"invalid JSON: {exc.msg}",
            source=name,
            location=f"line {exc.lineno}, column {exc.colno}",
            hint="fix the JSON syntax there (a trailing comma or an unclosed quote is typical)",
        ) from None


def _as_bundle(data: Any, name: str) -> tuple[JSONObject, list[str]]:
    if not isinstance(data, dict):
        raise FHIRParseError(
            f"expected a JSON object (a FHIR Bundle), got a JSON {type(data).__name__}",
            source=name,
            location="$",
            hint="pass one Bundle; for NDJSON bulk exports, collect the lines into a Bundle first",
        )
    rtype = data.get("resourceType")
    if rtype == "Bundle":
        return data, []
    if rtype == "Patient":
        wrapped = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": data}]}
        return wrapped, ["not a Bundle: the bare Patient resource was read as a one-entry collection"]
    if rtype == "OperationOutcome":
        issues = "; ".join(_issue_text(i) for i in as_list(data.get("issue")) if isinstance(i, dict))
        raise FHIRParseError(
            f"this is a server's OperationOutcome, not a Bundle: {issues or 'no issue text'}",
            source=name,
            location="issue",
            hint="fix the request that produced this file and fetch the bundle again",
        )
    got = f"resourceType is {rtype!r}" if rtype is not None else "there is no resourceType"
    raise FHIRParseError(
        f"{got}; expected 'Bundle'",
        source=name,
        location="resourceType",
        hint="wrap the resources in a Bundle of type 'collection', or fetch Patient/<id>/$everything",
    )


def _entries_json(bundle: JSONObject, name: str) -> list[JSONObject]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FHIRParseError("Bundle.entry must be a list", source=name, location="entry", hint="fix the JSON")
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        if not isinstance(entry, dict):
            raise FHIRParseError("a bundle entry must be a JSON object", source=name, location=where)
        resource = entry.get("resource")
        if resource is not None and not (isinstance(resource, dict) and "resourceType" in resource):
            raise FHIRParseError(
                "entry.resource must be a JSON object with a resourceType",
                source=name,
                location=f"{where}.resource" + (".resourceType" if isinstance(resource, dict) else ""),
                hint="give every resource its resourceType",
            )
    return entries


def _choose_version(
    bundle: JSONObject, resources: list[tuple[int, JSONObject]], version: FHIRVersion | None
) -> tuple[FHIRVersion, str, Validation]:
    if version is not None:
        return version, "given by the caller", validate_bundle(bundle, resources, version)
    only = [r for _, r in resources]
    if (declared := declared_version(bundle, only)) is not None:
        return declared[0], declared[1], validate_bundle(bundle, resources, declared[0])
    shapes = shape_versions(only)
    if len(shapes) == 1:
        (found, why), *_ = shapes.items()
        return found, why, validate_bundle(bundle, resources, found)
    prefix = "R4 and R5 shapes both occur" if shapes else "no release-specific shapes"
    r5 = validate_bundle(bundle, resources, "R5")
    if not r5.failures:
        return "R5", f"{prefix}; every entry validates with the R5 models", r5
    r4 = validate_bundle(bundle, resources, "R4")
    if not r4.failures:
        return "R4", f"{prefix}; every entry validates with the R4(B) models but not R5", r4
    if len(r4.failed_entries) < len(r5.failed_entries):
        return "R4", f"{prefix}; fewer entries fail with the R4(B) models than with R5", r4
    return "R5", f"{prefix}; entries fail with both R4(B) and R5 models, R5 kept", r5


def _version_hint(version: FHIRVersion, reason: str) -> str:
    other = "R5" if version != "R5" else "R4"
    return f"read as FHIR {version} ({reason}); pass version={other!r} if the bundle is {other}"


def _entry_key(rtype: str, resource: JSONObject, full_url: str | None, index: int) -> str:
    if isinstance(resource.get("id"), str):
        return f"{rtype}/{resource['id']}"
    if full_url and full_url.startswith("urn:uuid:"):
        return f"{rtype}/{full_url.removeprefix('urn:uuid:')}"
    return f"{rtype}/entry-{index}"


def _make_entries(
    entries_json: list[JSONObject],
    validation: Validation,
    bundle_type: str,
    warnings: list[str],
) -> tuple[BundleEntry, ...]:
    failed = validation.failed_entries
    out: list[BundleEntry] = []
    first_at: dict[str, int] = {}
    for i, entry in enumerate(entries_json):
        resource = entry.get("resource")
        if resource is None:
            if bundle_type not in _RESOURCELESS_OK:
                warnings.append(f"entry[{i}] has no resource and was skipped")
            continue
        if i in failed:
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        key = _entry_key(str(resource["resourceType"]), resource, full_url, i)
        if key in first_at:
            if bundle_type != "history":  # a history lists every version, newest first
                warnings.append(f"entry[{i}] repeats {key} (first at entry[{first_at[key]}]); the first is used")
            continue
        first_at[key] = i
        out.append(BundleEntry(i, resource, validation.models[i], full_url, mode, key))
    return tuple(out)


def _issue_text(issue: JSONObject) -> str:
    text = issue.get("diagnostics") or concept_text(issue.get("details")) or issue.get("code") or "?"
    return f"{issue.get('severity', 'issue')}: {text}"


def _outcome_warnings(bundle: JSONObject, entries: tuple[BundleEntry, ...]) -> list[str]:
    """Server messages travel as OperationOutcome entries (search.mode=outcome) or R5 Bundle.issues."""
    found: list[str] = []
    outcomes = [(e.path(), e.resource) for e in entries if e.resource_type == "OperationOutcome"]
    if isinstance(bundle.get("issues"), dict):
        outcomes.append(("issues", bundle["issues"]))
    for where, outcome in outcomes:
        for issue in as_list(outcome.get("issue")):
            if isinstance(issue, dict):
                found.append(f"server OperationOutcome at {where}: {_issue_text(issue)}")
    return found


def _external_reference_warnings(entries: tuple[BundleEntry, ...]) -> list[str]:
    """One line per target type, so a Synthea bundle's hundreds of practitioner links stay readable."""
    index = ReferenceIndex(entries)
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for entry in entries:
        for path, reference in iter_references(entry.resource, entry.path()):
            if index.resolve(reference, entry) is None:
                rtype = reference_target_type(reference) or "unknown type"
                counts[rtype] += 1
                example.setdefault(rtype, f"{path}.reference = {reference['reference']!r}")
    return [
        f"{n} reference{'s' if n > 1 else ''} to {rtype} not in the bundle (kept as external), e.g. {example[rtype]}"
        for rtype, n in sorted(counts.items())
    ]
