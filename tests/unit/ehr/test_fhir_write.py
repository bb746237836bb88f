"""FHIR writes over httpx.MockTransport: the transaction's wire form, which failures are re-sent, the
answer's checks, conditional reads, and the audit entry a write leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import okaflow
from okaflow.tools.ehr import ConditionalRead, FHIRClient

BASE = "https://ehr.test/fhir"
CAPABILITY = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1"}


def bundle(*types: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "resource": {"resourceType": t},
                "request": {"method": "POST", "url": t},
            }
            for i, t in enumerate(types)
        ],
    }


def answer(*statuses: str, kind: str = "transaction-response") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"response": {"status": s, "location": f"X/{i}/_history/1"}} for i, s in enumerate(statuses)],
    }


class Server:
    """Answers each request with the next queued response (or raises a queued exception), recording requests."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def client(self, **kwargs: Any) -> FHIRClient:
        kwargs.setdefault("auth", "tok")
        return FHIRClient(BASE, http_client=httpx.Client(transport=httpx.MockTransport(self)), **kwargs)


def ok(body: dict[str, Any], status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_a_transaction_is_one_post_of_fhir_json_to_the_base() -> None:
    server = Server(ok(answer("201 Created", "201 Created")))
    sent = bundle("DiagnosticReport", "Provenance")
    with server.client() as ehr:
        got = ehr.transaction(sent)
    (request,) = server.requests
    assert (request.method, str(request.url)) == ("POST", BASE)
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["accept"] == "application/fhir+json"
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == sent
    assert got["type"] == "transaction-response"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (answer("201 Created"), "1 response entries for 2 requests"),
        (answer("201 Created", "400 Bad Request"), "entry 1 has status '400 Bad Request'"),
        (answer("201 Created", "201 Created", kind="batch-response"), "not a transaction-response"),
        ({"resourceType": "OperationOutcome"}, "not a transaction-response"),
    ],
)
def test_an_answer_that_is_not_one_2xx_entry_per_request_is_a_response_error(
    reply: dict[str, Any], problem: str
) -> None:
    with Server(ok(reply)).client() as ehr, pytest.raises(okaflow.ClinicalResponseError) as info:
        ehr.transaction(bundle("DiagnosticReport", "Provenance"))
    assert problem in str(info.value)


def test_a_transaction_must_be_a_transaction_bundle() -> None:
    with Server().client() as ehr, pytest.raises(okaflow.ConfigurationError):
        ehr.transaction({"resourceType": "Bundle", "type": "batch", "entry": [{}]})


@pytest.mark.parametrize("status", [429, 503])
def test_a_write_is_resent_after_a_status_that_says_nothing_was_done(status: int) -> None:
    server = Server(httpx.Response(status, headers={"Retry-After": "0"}), ok(answer("201 Created")))
    with server.client() as ehr:
        ehr.transaction(bundle("DiagnosticReport"))
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 504, 408, 409])
def test_a_write_is_not_resent_after_a_status_that_may_follow_a_store(status: int) -> None:
    server = Server(httpx.Response(status), ok(answer("201 Created")))
    with server.client() as ehr, pytest.raises(okaflow.ClinicalStatusError):
        ehr.transaction(bundle("DiagnosticReport"))
    assert len(server.requests) == 1


def test_a_write_is_resent_when_the_connection_never_opened_but_not_after_a_lost_answer() -> None:
    refused = Server(httpx.ConnectError("refused"), ok(answer("201 Created")))
    with refused.client() as ehr:
        ehr.transaction(bundle("DiagnosticReport"))
    assert len(refused.requests) == 2
    lost = Server(httpx.ReadTimeout("no answer"), ok(answer("201 Created")))
    with lost.client() as ehr, pytest.raises(okaflow.ClinicalTimeoutError):
        ehr.transaction(bundle("DiagnosticReport"))
    assert len(lost.requests) == 1, "a POST whose answer was lost may have been stored: never re-sent blindly"


def test_reads_keep_retrying_what_they_retried_before() -> None:
    server = Server(httpx.Response(500), httpx.ReadTimeout("slow"), ok({"resourceType": "Patient", "id": "p"}))
    with server.client() as ehr:
        assert ehr.read("Patient", "p")["id"] == "p"
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 409, 412, 422])
def test_a_refused_transaction_is_a_rejected_error_quoting_the_server(status: int) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": "rolled back"}]}
    with Server(ok(outcome, status)).client() as ehr, pytest.raises(okaflow.ClinicalRejectedError) as info:
        ehr.transaction(bundle("DiagnosticReport"))
    assert info.value.status_code == status
    assert "rolled back" in str(info.value)
    assert "nothing of this request was stored" in str(info.value)
    # A refused read stores nothing either way: its hint does not talk about writes.
    with Server(ok(outcome, status)).client(max_retries=0) as ehr, pytest.raises(okaflow.ClinicalRejectedError) as read:
        ehr.read("Patient", "p")
    assert "stored" not in str(read.value) and "see its message" in str(read.value)


def test_a_conditional_read_says_not_modified_on_304() -> None:
    server = Server(httpx.Response(304, headers={"ETag": 'W/"2"'}))
    with server.client() as ehr:
        got = ehr.read("DiagnosticReport", "d1", if_none_match='W/"2"')
    assert got == ConditionalRead(None, True, 'W/"2"', None)
    assert not got.modified
    assert server.requests[0].headers["if-none-match"] == 'W/"2"'


def test_a_conditional_read_of_a_changed_resource_gives_it_and_its_new_etag() -> None:
    resource = {"resourceType": "DiagnosticReport", "id": "d1"}
    server = Server(ok(resource, ETag='W/"3"', **{"Last-Modified": "Mon, 23 Nov 2026 10:00:00 GMT"}))
    since = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with server.client() as ehr:
        got = ehr.read("DiagnosticReport", "d1", if_modified_since=since)
    assert got.modified and got.resource == resource and got.etag == 'W/"3"'
    assert got.last_modified == "Mon, 23 Nov 2026 10:00:00 GMT"
    assert server.requests[0].headers["if-modified-since"] == "Mon, 23 Nov 2026 09:00:00 GMT"


def test_if_modified_since_is_sent_in_gmt_and_a_naive_time_is_refused() -> None:
    server = Server(ok({"resourceType": "Patient", "id": "p"}))
    paris = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    with server.client() as ehr:
        ehr.read("Patient", "p", if_modified_since=paris)
        with pytest.raises(okaflow.ConfigurationError, match="naive") as info:
            ehr.read("Patient", "p", if_modified_since=datetime(2026, 11, 23, 9, 0))
    assert server.requests[0].headers["if-modified-since"] == "Mon, 23 Nov 2026 09:00:00 GMT"
    assert len(server.requests) == 1  # the naive one was refused before sending
    assert "aware datetime" in (info.value.hint or "")


def test_a_resource_read_with_decimals_is_written_back_digit_for_digit() -> None:
    stored = '{"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 7.10}}'
    server = Server(
        httpx.Response(200, text=stored, headers={"Content-Type": "application/fhir+json"}),
        ok({"resourceType": "Observation", "id": "o2"}, 201),
    )
    with server.client() as ehr:
        observation = ehr.read("Observation", "o1")
        del observation["id"]
        ehr.create(observation)
    assert b'"value": 7.10' in server.requests[1].content


def test_a_plain_read_still_answers_the_resource_and_a_304_to_it_is_an_error() -> None:
    with Server(ok({"resourceType": "Patient", "id": "p"})).client() as ehr:
        assert ehr.read("Patient", "p") == {"resourceType": "Patient", "id": "p"}
    with Server(httpx.Response(304)).client() as ehr, pytest.raises(okaflow.ClinicalStatusError):
        ehr.read("Patient", "p")


def test_a_conditional_create_sends_if_none_exist() -> None:
    server = Server(ok({"resourceType": "Media", "id": "m1"}, 200))
    with server.client() as ehr:
        got = ehr.create({"resourceType": "Media", "status": "completed"}, if_none_exist="identifier=a|b")
    assert got["id"] == "m1"
    (request,) = server.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/Media")
    assert request.headers["if-none-exist"] == "identifier=a|b"


def test_every_write_is_in_the_audit_trail(tmp_path: Any) -> None:
    trail = okaflow.AuditTrail(tmp_path / "audit.jsonl")
    refused = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "no"}]}
    server = Server(ok(answer("201 Created", "201 Created", "201 Created", "201 Created")), ok(refused, 422))
    with server.client(audit=trail) as ehr:
        ehr.transaction(bundle("DiagnosticReport", "Media", "Media", "Provenance"))
        with pytest.raises(okaflow.ClinicalRejectedError):
            ehr.transaction(bundle("DiagnosticReport"))
    done, failed = okaflow.read_audit(tmp_path)
    assert done["action"] == "transaction" and done["outcome"] == "success" and done["status"] == 200
    assert done["resource"] == "Bundle(transaction): DiagnosticReport, Media×2, Provenance"
    assert done["endpoint"] == BASE
    assert failed["outcome"] == "failure" and failed["status"] == 422
    assert "ClinicalRejectedError" in failed["detail"]
