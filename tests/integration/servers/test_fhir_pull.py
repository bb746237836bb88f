"""Pulling a patient's record from a real FHIR server (sekmet-fhir): $everything, paged searches, auth, failures."""

from __future__ import annotations

import pytest

import okaflow
from okaflow.model_backend import free_port
from okaflow.tools.ehr import BearerToken, FHIRClient, fetch_patient_record

from .conftest import SMART_NARROW_CLIENT, STATIC_TOKEN, FHIRServer

pytestmark = pytest.mark.integration
ADA, BEN = "OKA-PACS-001", "OKA-PACS-002"


def client(server: FHIRServer, **kwargs: object) -> FHIRClient:
    kwargs.setdefault("auth", STATIC_TOKEN)
    return FHIRClient(server.base_url, **kwargs)  # type: ignore[arg-type]


def subjects(record: okaflow.tools.ehr.PatientRecord) -> set[str]:
    return {
        str(e["resource"]["subject"]["reference"]).rsplit("/", 2)[-1]
        for e in record.bundle["entry"]
        if "subject" in e["resource"]
    }


def test_everything_gives_the_patients_whole_record_and_nothing_of_others(fhir_server: FHIRServer) -> None:
    ada = fhir_server.patients[ADA]
    with client(fhir_server) as ehr:
        assert ehr.supports_operation("Patient", "everything")
        record = fetch_patient_record(ehr, ada)
    assert record.strategy == "everything"
    assert record.version == "R4"
    assert record.bundle["entry"][0]["resource"]["id"] == ada
    assert len(record.resources("Observation")) == 7
    assert [r["status"] for r in record.resources("DiagnosticReport")] == ["final"]
    assert subjects(record) == {ada}, "another patient's resources came along"
    case = okaflow.Case.from_objects(record.bundle, task="CRP trend")
    assert case.patient.patient is not None
    assert {i.value for i in case.patient.patient.identifiers} == {ADA}
    assert len(case.patient.imaging_studies) == 1


def test_searches_page_through_next_links_and_match_everything(fhir_server: FHIRServer) -> None:
    ada = fhir_server.patients[ADA]
    with client(fhir_server, page_size=3) as ehr:
        searched = fetch_patient_record(ehr, ada, strategy="search")
        everything = fetch_patient_record(ehr, ada, strategy="everything")
        observations = ehr.search("Observation", {"patient": ada})
    assert searched.strategy == "search"
    assert len(observations) == 7  # three pages of three, three, one
    keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in searched.bundle["entry"]}
    everything_keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in everything.bundle["entry"]}
    assert keys == everything_keys
    # Patient read + 9 types, Observation over 3 pages: at least 12 requests, each page a request of its own.
    assert searched.requests >= 12
    assert searched.parse().patients[0].resource["id"] == ada


def test_find_patient_ids_by_mrn(fhir_server: FHIRServer) -> None:
    with client(fhir_server) as ehr:
        assert ehr.find_patient_ids(BEN) == [fhir_server.patients[BEN]]
        assert ehr.find_patient_ids("OKA-NOBODY") == []


@pytest.mark.parametrize("strategy", ["everything", "search"])
def test_an_unknown_patient_is_patient_not_found(fhir_server: FHIRServer, strategy: str) -> None:
    with client(fhir_server) as ehr, pytest.raises(okaflow.PatientNotFoundError) as info:
        fetch_patient_record(ehr, "no-such-patient", strategy=strategy)  # type: ignore[arg-type]
    assert info.value.patient_id == "no-such-patient"
    assert info.value.status_code == 404
    assert "find_patient_ids" in str(info.value)


def test_smart_backend_services_against_the_servers_token_endpoint(fhir_server: FHIRServer) -> None:
    auth = fhir_server.smart_auth()
    with FHIRClient(fhir_server.base_url, auth=auth) as ehr:
        record = fetch_patient_record(ehr, fhir_server.patients[ADA], strategy="search")
    assert auth.token_url == fhir_server.base_url.removesuffix("/fhir") + "/auth/token"  # discovered
    assert record.requests == 10  # the Patient and nine searches, one page each (metadata came first)
    assert auth.tokens_issued == 1, "the access token was not reused"


def test_a_token_the_server_no_longer_accepts_is_replaced_once(fhir_server: FHIRServer) -> None:
    auth = fhir_server.smart_auth()
    with FHIRClient(fhir_server.base_url, auth=auth) as ehr:
        ehr.read("Patient", fhir_server.patients[ADA])
        auth._token = "revoked"  # what the server sees of a token it revoked or forgot
        ehr.read("Patient", fhir_server.patients[ADA])
    assert auth.tokens_issued == 2


def test_no_credentials_is_a_401_saying_what_to_pass(fhir_server: FHIRServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKAFLOW_FHIR_TOKEN", raising=False)
    with FHIRClient(fhir_server.base_url) as ehr, pytest.raises(okaflow.ClinicalAuthenticationError) as info:
        ehr.read("Patient", fhir_server.patients[ADA])
    assert info.value.status_code == 401
    assert "Authentication required" in str(info.value)  # the server's OperationOutcome
    assert "auth=" in str(info.value) and "$OKAFLOW_FHIR_TOKEN" in str(info.value)


def test_a_wrong_static_token_is_a_401(fhir_server: FHIRServer) -> None:
    with client(fhir_server, auth=BearerToken("wrong")) as ehr, pytest.raises(okaflow.ClinicalAuthenticationError):
        ehr.read("Patient", fhir_server.patients[ADA])


def test_scopes_that_do_not_cover_the_read_are_a_403(fhir_server: FHIRServer) -> None:
    auth = fhir_server.smart_auth(SMART_NARROW_CLIENT, scope="system/Observation.read")
    with FHIRClient(fhir_server.base_url, auth=auth) as ehr:
        assert ehr.search("Observation", {"patient": fhir_server.patients[ADA]})
        with pytest.raises(okaflow.ClinicalPermissionDeniedError) as info:
            ehr.read("Patient", fhir_server.patients[ADA])
    assert info.value.status_code == 403
    assert "scopes" in str(info.value)


def test_an_unregistered_smart_client_is_refused_a_token(fhir_server: FHIRServer) -> None:
    auth = fhir_server.smart_auth("not-registered")
    with FHIRClient(fhir_server.base_url, auth=auth) as ehr, pytest.raises(okaflow.TokenRequestError) as info:
        ehr.read("Patient", fhir_server.patients[ADA])
    assert info.value.error == "invalid_client"
    assert "register public_jwks()" in str(info.value)


def test_a_smart_client_signing_with_another_key_is_refused(fhir_server: FHIRServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = okaflow.tools.ehr.SMARTBackendAuth(
        client_id="okaflow-tests", private_key=ec.generate_private_key(ec.SECP384R1())
    )
    with FHIRClient(fhir_server.base_url, auth=other) as ehr, pytest.raises(okaflow.TokenRequestError) as info:
        ehr.read("Patient", fhir_server.patients[ADA])
    assert info.value.error == "invalid_client"
    assert "verification failed" in str(info.value)


def test_a_server_that_is_down_is_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/fhir"
    with FHIRClient(url, max_retries=1) as ehr, pytest.raises(okaflow.ClinicalConnectionError) as info:
        fetch_patient_record(ehr, "123")
    assert f"{url}/metadata" in str(info.value)
    assert "after 2 attempts" in str(info.value)
    assert info.value.system == "FHIR"
