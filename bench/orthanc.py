"""A real Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) as the PACS, on loopback ports,
from a configuration generated in a temporary folder; and DCMTK's ``storescu``/``echoscu`` as a modality.
Used by the PACS burst benchmark and by the tests of the PACS gateway (tests/service/pacs).

Orthanc 1.10 has no bind-address option: it refuses HTTP from other hosts (RemoteAccessAllowed
false) and DICOM from unknown peers (only the modality declared here, on 127.0.0.1, may store).
"""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
_START_TIMEOUT_S = 60.0


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Orthanc:
    """``start()``/``stop()`` keep the same storage and ports, so a restart is the same PACS coming back."""

    def __init__(self, folder: Path, *, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]]) -> None:
        self.folder = folder
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "cxr-test-pacs",
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: [ae, "127.0.0.1", port] for name, (ae, port) in modalities.items()},
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.log = folder / "orthanc.log"

    def start(self) -> "Orthanc":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: see {self.log}")
            try:
                if httpx.get(f"{self.url}/system", timeout=2.0).status_code == 200:
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
