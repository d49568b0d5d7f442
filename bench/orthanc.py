"""A real Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) as the PACS, on loopback ports,
from a configuration generated in a temporary folder; and DCMTK's ``storescu``/``echoscu`` as a modality.
Used by the PACS burst benchmark and by the tests of the PACS gateway (tests/service/pacs).

Orthanc 1.10 has no bind-address option: it refuses HTTP from other hosts (RemoteAccessAllowed
false) and DICOM from unknown peers (only the modality declared here, on 127.0.0.1, may store).
"""

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.service_process import free_port

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
_START_TIMEOUT_S = 60.0
# A port picked free can be taken by another process before Orthanc binds it (tests run beside
# other servers): Orthanc then exits saying so, and a first start tries again on fresh ports.
_PORT_TAKEN = "already in use"
_FIRST_START_TRIES = 3


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for candidate in sorted(folder.glob("libOrthancDicomWeb.so*")):
            return candidate
    return None


PACS_TOOLS = ("Orthanc", "storescu", "echoscu")


def missing_tools(*names: str) -> list[str]:
    """Which of the Debian packages' programs (and the DICOMweb plugin) are missing here."""
    missing = [name for name in names if shutil.which(name) is None]
    if "Orthanc" in names and dicomweb_plugin() is None:
        missing.append("orthanc-dicomweb plugin")
    return missing


class Orthanc:
    """``start()``/``stop()`` keep the same storage and ports, so a restart is the same PACS coming back."""

    def __init__(self, folder: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]]) -> None:
        self.folder = folder
        self.aet = aet
        self.modalities = modalities
        self.process: subprocess.Popen[bytes] | None = None
        self.started_once = False
        # Told apart from any other Orthanc that may answer on the same port (see start()).
        self.name = f"cxr-test-pacs-{secrets.token_hex(4)}"
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "orthanc.json"
        self.log = folder / "orthanc.log"
        self.use_ports(free_port(), free_port())

    def use_ports(self, dicom_port: int, http_port: int) -> None:
        """(Re)write the configuration for these ports."""
        self.dicom_port, self.http_port = dicom_port, http_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        folder = self.folder
        config = {
            "Name": self.name,
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {
                name: [ae, "127.0.0.1", port] for name, (ae, port) in self.modalities.items()
            },
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
        }
        self.config.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def start(self) -> "Orthanc":
        """Start and wait until it answers. A restart keeps the ports (the same PACS coming back);
        only a first start that lost a port to another process moves to fresh ones."""
        for attempt in range(1, _FIRST_START_TRIES + 1):
            log_start = self.log.stat().st_size if self.log.exists() else 0
            try:
                return self._start_once()
            except RuntimeError:
                lost_port = _PORT_TAKEN in self.log.read_bytes()[log_start:].decode("utf-8", "replace")
                if self.started_once or not lost_port or attempt == _FIRST_START_TRIES:
                    raise
                self.use_ports(free_port(), free_port())
        raise AssertionError("unreachable")

    def _start_once(self) -> "Orthanc":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: see {self.log}")
            try:
                answer = httpx.get(f"{self.url}/system", timeout=2.0)
                if answer.status_code == 200 and answer.json().get("Name") == self.name:
                    self.started_once = True
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # --- what the PACS holds ------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=30.0)
        response.raise_for_status()
        return response.json()

    def study_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance of a study (REST API), as simplified tags."""
        found = httpx.post(
            f"{self.url}/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": False},
            timeout=30.0,
        )
        found.raise_for_status()
        return [self.get(f"/instances/{orthanc_id}/simplified-tags") for orthanc_id in found.json()]

    def qido_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the study's instances as DICOM JSON ([] when the study is unknown)."""
        response = httpx.get(
            f"{self.dicomweb}/studies/{study_uid}/instances",
            headers={"Accept": "application/dicom+json"},
            timeout=30.0,
        )
        if response.status_code == 404 or not response.content:
            return []
        response.raise_for_status()
        result = response.json()
        assert isinstance(result, list)
        return result

    def instance_count(self) -> int:
        return int(self.get("/statistics")["CountInstances"])


def storescu(
    port: int, files: list[Path], *, calling: str, called: str = "CXR-TRIAGE"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def echoscu(port: int, *, calling: str, called: str = "CXR-TRIAGE") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
