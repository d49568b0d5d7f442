"""DICOM TLS on the SCP: with a CA configured, only a modality holding a certificate it signed gets in.

Certificates are made with the openssl CLI in a temporary folder; the modality is pynetdicom over TLS.
"""

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from service.settings import Settings
from tests.service.pacs.harness import MODALITY_AE, SERVICE_AE, film, gateway_server, pacs_settings, studies


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def _signed(folder: Path, name: str, *, ca: str = "ca") -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        cwd=folder,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-copy_extensions",
        "copy",
        cwd=folder,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
            cwd=folder,
        )
    _signed(folder, "server")
    _signed(folder, "modality")
    _signed(folder, "stranger", ca="other-ca")
    return folder


def _client(pki: Path, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    if cert is not None:
        context.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return context


def _associate(port: int, tls: ssl.SSLContext | None) -> bool:
    modality = AE(ae_title=MODALITY_AE)
    modality.add_requested_context(Verification)
    modality.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    modality.acse_timeout = modality.network_timeout = 10
    tls_args = None if tls is None else (tls, "127.0.0.1")
    assoc = modality.associate("127.0.0.1", port, ae_title=SERVICE_AE, tls_args=tls_args)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_store(film(seed=70))
        return int(status.Status) == 0x0000
    finally:
        assoc.release()


def test_mutual_tls(tmp_path: Path, service_settings: Settings, pki: Path) -> None:
    pacs = pacs_settings(
        tmp_path / "spool",
        dicom_tls_cert=pki / "server.crt",
        dicom_tls_key=pki / "server.key",
        dicom_tls_ca=pki / "ca.crt",
    )
    assert pacs.dicom_port is not None
    with gateway_server(service_settings, pacs) as (_, client):
        assert not _associate(pacs.dicom_port, None)  # plain DICOM on a TLS port
        assert not _associate(pacs.dicom_port, _client(pki, None))  # TLS without a client certificate
        assert not _associate(pacs.dicom_port, _client(pki, "stranger"))  # signed by another CA
        assert _associate(pacs.dicom_port, _client(pki, "modality"))
        assert studies(client)["total"] == 1  # only the authenticated modality's film got in
