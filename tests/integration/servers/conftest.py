"""A real PACS (Orthanc + DICOMweb) and a real FHIR server (sekmet-fhir), started once per test session.

``scripts/pacs-env.sh`` installs both (``scripts/test.sh`` runs it). sekmet binds 127.0.0.1. Orthanc
cannot be bound to one address (1.10 has no such option): it is only started when this process runs
in a network namespace whose only interface is loopback (``scripts/netns.sh``, which ``scripts/test.sh``
uses for all of pytest), and the tests fail, saying so, rather than start it anywhere else.

The servers hold synthetic patients only: two FHIR patients loaded by a transaction, and pydicom's
sample CT and MR files re-labelled with those patients' identifiers (the MR copied under new UIDs
for the second patient). Each server's log is printed when a test fails while it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from okaflow._case import resolve_image_path
from okaflow.model_backend import free_port
from okaflow.tools.ehr import SMARTBackendAuth

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "pacs"
ORTHANC = Path(os.environ.get("OKAFLOW_ORTHANC", "/usr/sbin/Orthanc"))
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
READY_TIMEOUT_S = 60.0
STATIC_TOKEN = "okaflow-test-static-token"
SMART_CLIENT = "okaflow-tests"
SMART_NARROW_CLIENT = "okaflow-tests-observations-only"
OUR_AET = "OKAFLOW"
MRN_SYSTEM = "urn:oid:1.2.3.4.5.1"  # sekmet's default MRN system


@dataclass
class ServerProcess:
    """One server started as a child process, with its log in a file."""

    name: str
    command: list[str]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool]) -> None:
        """Start and poll ``ready`` until it answers True, the process dies, or the deadline passes."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode} while starting:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.05)  # a poll interval, not a synchronisation: readiness is asked of the server
        self.stop()
        pytest.fail(f"{self.name} was not ready within {READY_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.exists() else ""


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when pytest dies, so a crashed session leaves no server behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(url: str, **headers: str) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def confined_to_loopback() -> bool:
    """Whether this process's network namespace has no interface but loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


# -- the FHIR server -------------------------------------------------------------------------------
@dataclass
class FHIRServer:
    """sekmet-fhir on 127.0.0.1 with static-bearer and SMART backend-services auth, and the test patients."""

    base_url: str
    smart_key: Any  # the SMART test client's private key (EC P-384)
    process: ServerProcess
    patients: dict[str, str] = field(default_factory=dict)  # MRN -> the server's Patient id

    def smart_auth(self, client_id: str = SMART_CLIENT, **kwargs: Any) -> SMARTBackendAuth:
        return SMARTBackendAuth(client_id=client_id, private_key=self.smart_key, **kwargs)


def sekmet_executable() -> Path:
    path = Path(os.environ.get("OKAFLOW_SEKMET") or ROOT / ".venv-fhir" / "bin" / "sekmet")
    if not path.exists():
        pytest.fail(f"no sekmet-fhir at {path}: install it with scripts/pacs-env.sh (scripts/test.sh does)")
    return path


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FHIRServer]:
    from cryptography.hazmat.primitives.asymmetric import ec

    home = tmp_path_factory.mktemp("sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    key = ec.generate_private_key(ec.SECP384R1())
    jwks = SMARTBackendAuth(client_id=SMART_CLIENT, private_key=key).public_jwks()
    settings = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(home / "data"),
        "own_private_key_path": str(home / "keys" / "sekmet.pem"),
        "simulator": {"enabled": False},  # no simulated lab/RIS reacting to what the tests write
        "log_inbound": False,
        "server_auth": {
            "types": ["bearer", "smart"],
            "tokens": [STATIC_TOKEN],
            "token_lifetime": 120,
            "smart_clients": [
                {"client_id": SMART_CLIENT, "jwks": jwks, "scopes": "system/*.read"},
                {"client_id": SMART_NARROW_CLIENT, "jwks": jwks, "scopes": "system/Observation.read"},
            ],
        },
    }
    (home / "settings.yaml").write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    command = [str(sekmet_executable()), "serve", "--config", str(home / "settings.yaml")]
    process = ServerProcess("sekmet-fhir", command, home, home / "sekmet.log")
    process.start(lambda: _answers(f"{base}/metadata"))
    server = FHIRServer(base_url=base, smart_key=key, process=process)
    try:
        server.patients = _load_patients(base)
        yield server
    finally:
        process.stop()


def _load_patients(base: str) -> dict[str, str]:
    """POST the synthetic transaction; the server's Patient id per MRN."""
    bundle = json.loads((DATA / "patients.json").read_text(encoding="utf-8"))
    studies = study_uids()
    text = json.dumps(bundle)
    for name, uid in studies.items():
        text = text.replace(f"{{{{{name}}}}}", uid)  # {{CT_STUDY_UID}} placeholders
    response = httpx.post(
        base,
        content=text,
        headers={"Authorization": f"Bearer {STATIC_TOKEN}", "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:2000]
    patients: dict[str, str] = {}
    for entry, result in zip(bundle["entry"], response.json()["entry"], strict=True):
        if entry["resource"]["resourceType"] == "Patient":
            mrn = entry["resource"]["identifier"][0]["value"]
            patients[mrn] = result["response"]["location"].split("/Patient/")[1].split("/")[0]
    return patients


# -- the PACS --------------------------------------------------------------------------------------
@dataclass
class PACSServer:
    """Orthanc with DICOMweb, in this process's private network namespace."""

    http_url: str
    dicomweb_url: str
    dicom_port: int
    aet: str
    process: ServerProcess
    instances: dict[str, Path]  # SOPInstanceUID -> the file uploaded
    move_port: int = 0  # where Orthanc's DicomModalities entry for OUR_AET sends C-MOVE results (on 127.0.0.1)


#: The synthetic studies: (file in pydicom's wheel, PatientID, AccessionNumber, UID seed or None to keep UIDs).
STUDIES = {
    "CT_STUDY": ("CT_small.dcm", "OKA-PACS-001", "ACC-PACS-001", None),
    "MR_STUDY": ("MR_small.dcm", "OKA-PACS-001", "ACC-PACS-002", None),
    "OTHER_MR_STUDY": ("MR_small.dcm", "OKA-PACS-002", "ACC-PACS-003", "okaflow-tests-patient-2"),
    # Written back into by the DICOM sink tests, so the pull tests never meet their SR and images.
    "WRITEBACK_STUDY": ("CT_small.dcm", "OKA-PACS-003", "ACC-PACS-004", "okaflow-tests-writeback"),
}


def synthetic_dicom(name: str) -> pydicom.Dataset:
    """One synthetic study's instance: a pydicom sample file under a test patient's identifiers."""
    file, patient_id, accession, seed = STUDIES[name]
    ds = pydicom.dcmread(resolve_image_path(f"pydicom:{file}", ROOT))
    ds.PatientID = patient_id
    ds.PatientName = f"Synthetic^{patient_id}"
    ds.AccessionNumber = accession
    if seed is not None:
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "instance"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def new_patient_with_study(fhir: FHIRServer, pacs: PACSServer, mrn: str) -> tuple[str, pydicom.Dataset]:
    """A synthetic patient of the test's own on both servers: a FHIR Patient carrying ``mrn``, and one CT
    instance of a new study under that PatientID stored in Orthanc. Tests that write into a study use one,
    so the shared studies other tests read stay as they were. Returns the Patient's id and the instance."""
    ds = synthetic_dicom("CT_STUDY")
    ds.PatientID, ds.PatientName, ds.AccessionNumber = mrn, f"Synthetic^{mrn}", f"ACC-{mrn}"[:16]
    for n, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        setattr(ds, keyword, generate_uid(entropy_srcs=[mrn, str(n)]))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    patient = {"resourceType": "Patient", "identifier": [{"value": mrn}], "name": [{"family": "Synthetic"}]}
    answer = httpx.post(
        f"{fhir.base_url}/Patient",
        json=patient,
        headers={"Authorization": f"Bearer {STATIC_TOKEN}", "If-None-Exist": f"identifier={mrn}"},
        timeout=30,
    )
    assert answer.status_code in (200, 201), answer.text[:500]
    upload = io.BytesIO()
    ds.save_as(upload, enforce_file_format=True)
    httpx.post(f"{pacs.http_url}/instances", content=upload.getvalue(), timeout=30).raise_for_status()
    return str(answer.json()["id"]), ds


def study_uids() -> dict[str, str]:
    """``{"CT_STUDY_UID": ..., ...}``: the placeholders tests/data/pacs/patients.json uses."""
    return {f"{name}_UID": str(synthetic_dicom(name).StudyInstanceUID) for name in STUDIES}


def start_orthanc(
    home: Path, aet: str, our_port: int, *, allow_all: bool, **settings: Any
) -> tuple[str, int, ServerProcess]:
    """An Orthanc in ``home`` on free ports (its HTTP URL, its DICOM port, the process), listing our AE title
    at ``our_port``; ``allow_all`` admits any AE title to every DIMSE service, else only those it lists."""
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": f"okaflow-test-{aet.lower()}",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        # With Move allowed, a C-MOVE from an unlisted AE title reaches the destination check.
        **{f"DicomAlwaysAllow{service}": allow_all for service in ("Echo", "Store", "Find", "Get", "Move")},
        "DicomModalities": {"okaflow": [OUR_AET, "127.0.0.1", our_port]},
        **settings,
    }
    (home / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    http = f"http://127.0.0.1:{http_port}"
    process = ServerProcess(f"Orthanc {aet}", [str(ORTHANC), str(home / "orthanc.json")], home, home / "orthanc.log")
    process.start(lambda: _answers(f"{http}/system"))
    return http, dicom_port, process


@pytest.fixture(scope="session")
def pacs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PACSServer]:
    if not confined_to_loopback():
        pytest.fail(
            "Orthanc listens on every network interface (it has no bind-address option), so the tests start it "
            "only inside a private network namespace whose only interface is loopback. Run them through "
            "scripts/test.sh, or: scripts/netns.sh .venv/bin/pytest tests/integration/servers"
        )
    if not ORTHANC.exists() or not DICOMWEB_PLUGIN.exists():
        pytest.fail(f"no Orthanc with DICOMweb ({ORTHANC}, {DICOMWEB_PLUGIN}): run scripts/pacs-env.sh")
    move_port = free_port()
    http, dicom_port, process = start_orthanc(
        tmp_path_factory.mktemp("orthanc"),
        "ORTHANC",
        move_port,
        allow_all=True,
        DicomCheckCalledAet=False,
        Plugins=[str(DICOMWEB_PLUGIN)],
        DicomWeb={"Enable": True, "Root": "/dicom-web/"},
    )
    home = process.cwd
    try:
        instances = {}
        for name in STUDIES:
            ds = synthetic_dicom(name)
            path = home / f"{name}.dcm"
            ds.save_as(path, enforce_file_format=True)
            response = httpx.post(f"{http}/instances", content=path.read_bytes(), timeout=30)
            assert response.status_code == 200, response.text
            instances[str(ds.SOPInstanceUID)] = path
        yield PACSServer(http, f"{http}/dicom-web", dicom_port, "ORTHANC", process, instances, move_port)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def strict_pacs(pacs_server: PACSServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PACSServer]:
    """A second, empty Orthanc that admits only the AE titles it lists and only when called by its own title.

    It is the real peer that rejects associations (unknown calling AE title, wrong called AE title).
    """
    http, dicom_port, process = start_orthanc(
        tmp_path_factory.mktemp("orthanc-strict"), "STRICT", free_port(), allow_all=False, DicomCheckCalledAet=True
    )
    try:
        yield PACSServer(http, "", dicom_port, "STRICT", process, {})
    finally:
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report ends with the logs of the servers it used."""
    report: Any = yield
    if report.failed and call.when == "call":
        funcargs = getattr(item, "funcargs", {})
        for server in (funcargs.get("fhir_server"), funcargs.get("pacs_server"), funcargs.get("strict_pacs")):
            if server is not None:
                report.sections.append((f"{server.process.name} log", server.process.tail()))
    return report
