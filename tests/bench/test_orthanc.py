"""The Orthanc fixture itself: a port taken between picking it and Orthanc binding it is survived."""

import socket
from pathlib import Path

import httpx
import pytest

from bench.orthanc import PACS_TOOLS, Orthanc, missing_tools


@pytest.fixture
def pacs(tmp_path: Path) -> Orthanc:
    missing = missing_tools(*PACS_TOOLS)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make setup installs them)")
    return Orthanc(tmp_path / "orthanc", modalities={})


def test_a_first_start_whose_port_was_taken_moves_to_fresh_ports(pacs: Orthanc) -> None:
    taken_port = pacs.http_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen()
        try:
            pacs.start()
            assert pacs.http_port != taken_port
            assert httpx.get(f"{pacs.url}/system", timeout=10).json()["Name"] == pacs.name
            assert b"already in use" in pacs.log.read_bytes()
        finally:
            pacs.stop()


def test_a_restart_keeps_its_ports_and_says_when_they_are_gone(pacs: Orthanc) -> None:
    pacs.start()
    ports = (pacs.dicom_port, pacs.http_port)
    pacs.stop()
    pacs.start()
    try:
        assert (pacs.dicom_port, pacs.http_port) == ports
    finally:
        pacs.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", pacs.http_port))
        squatter.listen()
        # The same PACS coming back may not silently move: whoever stored its address would lose it.
        with pytest.raises(RuntimeError, match="Orthanc exited"):
            pacs.start()
        assert (pacs.dicom_port, pacs.http_port) == ports
