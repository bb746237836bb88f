"""The FHIR client's wire behaviour over httpx.MockTransport: R5 servers (none can run here), paging
safety, malformed answers, retries, decimals, and the lazy extra."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

import okaflow
from okaflow.tools.ehr import FHIRClient, fetch_patient_record

BASE = "https://ehr.test/r5"


def capability(version: str = "5.0.0", everything: bool = False) -> dict[str, Any]:
    patient: dict[str, Any] = {"type": "Patient"}
    if everything:
        patient["operation"] = [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/x"}]
    types = [{"type": t, "searchParam": [{"name": "patient", "type": "reference"}]} for t in ("Observation",)]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": version,
        "rest": [{"mode": "server", "resource": [patient, *types]}],
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "M1"}]}


def observation(n: int, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-0" + str(n + 1),
        "valueQuantity": {"value": f"__{value}__", "unit": "mg/dL"},
    }


def raw(data: dict[str, Any]) -> bytes:
    """JSON with FHIR decimals written as given (1.40 stays 1.40)."""
    text = json.dumps(data)
    for marker in [m for m in text.split('"') if m.startswith("__") and m.endswith("__")]:
        text = text.replace(f'"{marker}"', marker.strip("_"))
    return text.encode()


def serve(routes: dict[str, Any], seen: list[str] | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if seen is not None:
            seen.append(url)
        for prefix, answer in routes.items():
            if url.startswith(prefix):
                return answer if isinstance(answer, httpx.Response) else httpx.Response(200, content=raw(answer))
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": url}]})

    return httpx.Client(transport=httpx.MockTransport(handler))


def page(entries: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in entries],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def test_an_r5_server_is_read_as_r5_and_searches_page_with_decimals_kept() -> None:
    seen: list[str] = []
    routes = {
        f"{BASE}/metadata": capability("5.0.0"),
        f"{BASE}/Patient/p1": PATIENT,
        f"{BASE}/Observation?_count=100&patient=p1": page([observation(0, "1.40")], f"{BASE}/Observation?page=2"),
        f"{BASE}/Observation?page=2": page([observation(1, "1.25")]),
    }
    with FHIRClient(BASE, http_client=serve(routes, seen)) as ehr:
        record = fetch_patient_record(ehr, "p1", resource_types=["Observation", "Condition"])
    assert record.version == "R5" and record.strategy == "search"
    assert record.parse().version == "R5"
    assert [r["id"] for r in record.resources("Observation")] == ["o0", "o1"]
    assert '"value": 1.40' in record.to_json()  # not 1.4
    assert record.warnings == ("Condition: not offered by the server, not searched",)
    assert f"{BASE}/Observation?page=2" in seen


def test_stu3_servers_are_refused_by_name() -> None:
    ehr = FHIRClient(BASE, http_client=serve({f"{BASE}/metadata": capability("3.0.2")}))
    with ehr, pytest.raises(okaflow.ClinicalResponseError, match=r"FHIR 3\.0\.2"):
        fetch_patient_record(ehr, "p1")


def test_a_next_link_to_another_server_is_not_followed() -> None:
    routes = {f"{BASE}/Observation": page([observation(0, "1.0")], "https://elsewhere.test/r5/Observation?p=2")}
    ehr = FHIRClient(BASE, auth="secret", http_client=serve(routes))
    with ehr, pytest.raises(okaflow.ClinicalResponseError, match=r"outside https://ehr\.test/r5"):
        ehr.search("Observation", {"patient": "p1"})


def test_a_next_link_that_loops_is_refused() -> None:
    loop = f"{BASE}/Observation?page=2"
    routes = {loop: page([observation(1, "1.0")], loop), f"{BASE}/Observation": page([observation(0, "1.0")], loop)}
    with FHIRClient(BASE, http_client=serve(routes)) as ehr, pytest.raises(okaflow.ClinicalResponseError, match="back"):
        ehr.search("Observation")


def test_pages_beyond_max_pages_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("n", "0"))
        return httpx.Response(200, content=raw(page([observation(n % 9, "1.0")], f"{BASE}/Observation?n={n + 1}")))

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with FHIRClient(BASE, max_pages=3, http_client=client) as ehr, pytest.raises(okaflow.ClinicalResponseError) as info:
        ehr.search("Observation")
    assert "after 3" in str(info.value) and "max_pages=" in str(info.value)


def test_an_html_answer_is_a_response_error() -> None:
    login = httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})
    ehr = FHIRClient(BASE, http_client=serve({f"{BASE}/metadata": login}))
    with ehr, pytest.raises(okaflow.ClinicalResponseError, match="text/html, not JSON"):
        ehr.capabilities()


def test_a_503_is_retried_and_a_404_is_not() -> None:
    answers = [httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, content=raw(PATIENT))]
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return answers.pop(0) if request.url.path.endswith("/p1") else httpx.Response(404, json={})

    with FHIRClient(BASE, http_client=httpx.Client(transport=httpx.MockTransport(handler))) as ehr:
        assert ehr.read("Patient", "p1")["id"] == "p1"
        with pytest.raises(okaflow.PatientNotFoundError):
            ehr.read("Patient", "p2")
    assert calls == ["/r5/Patient/p1", "/r5/Patient/p1", "/r5/Patient/p2"]


def test_everything_is_used_when_declared_and_the_patient_leads() -> None:
    bundle = page([observation(0, "2.0"), PATIENT])
    routes = {f"{BASE}/metadata": capability(everything=True), f"{BASE}/Patient/p1/$everything": bundle}
    with FHIRClient(BASE, http_client=serve(routes)) as ehr:
        record = fetch_patient_record(ehr, "p1")
    assert record.strategy == "everything"
    assert [e["resource"]["resourceType"] for e in record.bundle["entry"]] == ["Patient", "Observation"]


def test_no_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKAFLOW_FHIR_URL", raising=False)
    with pytest.raises(okaflow.ConfigurationError, match="OKAFLOW_FHIR_URL"):
        FHIRClient()


def test_the_pacs_extra_is_imported_lazily_and_named_when_missing() -> None:
    code = (
        "import sys, okaflow, okaflow.tools.ehr; "
        "print(','.join(m for m in ('jwt', 'dicomweb_client', 'requests', 'cryptography') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    hide = (
        "import sys; sys.modules['dicomweb_client'] = None; import okaflow\n"
        "from okaflow.tools.pacs import DICOMwebClient\n"
        "try:\n    DICOMwebClient('http://pacs.test/dicom-web')\n"
        "except okaflow.MissingExtraError as e:\n    print(e.hint)"
    )
    out = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pip install 'okaflow[pacs]'"
