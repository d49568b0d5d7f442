"""Films as a modality would send them, a gateway service on loopback, and patient waiting."""

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import IO, Any, TypeVar

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from bench import orthanc
from bench.orthanc import PACS_TOOLS, missing_tools
from bench.service_process import free_port
from service.main import create_app
from service.settings import PacsSettings, Settings
from tests.factories import chest_like, dicom_bytes, dicom_dataset
from tests.service.live import AUTH_HEADERS, REPO_ROOT, ThreadedServer

MODALITY_AE = "MODALITY"
SERVICE_AE = "CXR-TRIAGE"
WAIT_S = 240.0  # the machine is shared and loaded: generous, never a timing assertion
T = TypeVar("T")
# The SOP classes of the gateway's results, as the PACS lists them.
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def film(study_uid: str | None = None, seed: int = 0, **edits: Any) -> Dataset:
    """A DX chest film (64 x 64, 12-bit) in ``study_uid`` (a new study if None)."""
    ds = dicom_dataset(chest_like(64, 64, seed=seed))
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    ds.InstanceNumber = seed + 1
    for keyword, value in edits.items():
        setattr(ds, keyword, value)
    return ds


def write_films(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"film-{index:04d}-{generate_uid()[-8:]}.dcm"
        path.write_bytes(dicom_bytes(ds))
        paths.append(path)
    return paths


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S, every_s: float = 0.25) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


def pacs_settings(spool: Path, **overrides: Any) -> PacsSettings:
    values: dict[str, Any] = {
        "dicom_port": free_port(),
        "dicom_ae_title": SERVICE_AE,
        "dicom_allowed_aes": MODALITY_AE,
        "dicom_allowed_peers": "127.0.0.1/32",
        "pacs_spool_dir": spool,
        "pacs_poll_s": 0.2,
        "pacs_retry_base_s": 0.2,
        "pacs_retry_max_s": 1.0,
        "pacs_workers": 2,
    }
    values.update(overrides)
    return PacsSettings(**values)


def delivering_to(pacs: orthanc.Orthanc, spool: Path, **overrides: Any) -> PacsSettings:
    """The gateway's settings with its results sent by C-STORE to ``pacs``."""
    destination = {
        "pacs_dest_host": "127.0.0.1",
        "pacs_dest_port": pacs.dicom_port,
        "pacs_dest_ae_title": pacs.aet,
    }
    return pacs_settings(spool, **(destination | overrides))


@contextmanager
def gateway_server(service: Settings, pacs: PacsSettings) -> Iterator[tuple[ThreadedServer, httpx.Client]]:
    with (
        ThreadedServer(create_app(service, pacs)) as server,
        httpx.Client(base_url=server.url, headers=AUTH_HEADERS, timeout=60.0) as client,
    ):
        yield server, client


def studies(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/studies", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def instances(client: httpx.Client) -> list[dict[str, Any]]:
    """Every job the gateway knows, across all studies."""
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = studies(client, limit=500, offset=offset)
        for study in page["studies"]:
            found += study["instances"]
        offset += len(page["studies"])
        if offset >= page["total"] or not page["studies"]:
            return found


def all_done(client: httpx.Client, expected: int) -> list[dict[str, Any]] | None:
    jobs = instances(client)
    finished = [job for job in jobs if job["state"] in ("done", "dead")]
    return jobs if len(jobs) == expected and len(finished) == expected else None


@contextmanager
def gateway_process(env: dict[str, str], log: IO[bytes]) -> Iterator[tuple["subprocess.Popen[bytes]", str]]:
    """``python -m service`` (the gateway in it) until the block ends; yields (process, base URL) once
    /readyz is 200. The block may kill the process itself."""
    url = f"http://127.0.0.1:{env['CXR_PORT']}"
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for("the service to be ready", lambda: _ready(process, url), timeout_s=120.0, every_s=0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(process: "subprocess.Popen[bytes]", url: str) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"python -m service exited with {process.returncode} before it was ready")
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def require_pacs_tools() -> None:
    """Skip, naming what is missing, where Orthanc or DCMTK is not installed (`make test` installs them)."""
    missing = missing_tools(*PACS_TOOLS)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install orthanc orthanc-dicomweb dcmtk)")


def storescu(
    port: int, files: list[Path], *, calling: str, called: str = SERVICE_AE
) -> CompletedProcess[str]:
    require_pacs_tools()
    return orthanc.storescu(port, files, calling=calling, called=called)


def echoscu(port: int, *, calling: str, called: str = SERVICE_AE) -> CompletedProcess[str]:
    require_pacs_tools()
    return orthanc.echoscu(port, calling=calling, called=called)
