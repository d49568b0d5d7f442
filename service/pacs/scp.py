"""The C-STORE SCP (pynetdicom): CR, DX and Secondary Capture in, C-ECHO answered.

Who may talk to it: a peer address outside ``CXR_DICOM_ALLOWED_PEERS`` is disconnected before the
association is read; a calling AE title outside ``CXR_DICOM_ALLOWED_AES`` is rejected (A-ASSOCIATE-RJ,
"calling AE title not recognised"); any other SOP class (CT, SR, ...) finds no presentation context.
A C-STORE is answered success only once the instance is spooled and its job committed.
"""

import ipaddress
import logging
import socket
import ssl
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from service.pacs.intake import ACCEPTED_SOP_CLASSES, ACCEPTED_TRANSFER_SYNTAXES, CANNOT_UNDERSTAND, Intake
from service.pacs.metrics import PacsMetrics
from service.settings import PacsSettings

logger = logging.getLogger(__name__)
# pynetdicom logs association and DIMSE details at INFO/DEBUG (UIDs among them): warnings only.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_MAX_ASSOCIATIONS = 32
_TIMEOUT_S = 60.0


def tls_context(settings: PacsSettings) -> ssl.SSLContext | None:
    if settings.dicom_tls_cert is None or settings.dicom_tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.dicom_tls_cert, settings.dicom_tls_key)
    if settings.dicom_tls_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the modality proves who it is
        context.load_verify_locations(settings.dicom_tls_ca)
    return context


def start_scp(settings: PacsSettings, intake: Intake, metrics: PacsMetrics) -> ThreadedAssociationServer:
    """Listen on ``CXR_DICOM_HOST:CXR_DICOM_PORT`` in background threads; ``.shutdown()`` stops it."""
    assert settings.dicom_port is not None
    ae = AE(ae_title=settings.dicom_ae_title)
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
    ae.add_supported_context(Verification)
    ae.require_calling_aet = settings.allowed_aes
    ae.maximum_associations = _MAX_ASSOCIATIONS
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = _TIMEOUT_S

    def on_store(event: Any) -> int:
        try:
            data = event.encoded_dataset(include_meta=True)
            received = intake.receive(data, "dimse")
        except Exception as exc:  # our bug or the table's disk: refuse, the modality will retry
            logger.error("C-STORE failed", extra={"error": type(exc).__name__})
            metrics.received.labels("dimse", "refused").inc()
            return CANNOT_UNDERSTAND
        metrics.received.labels("dimse", received.outcome).inc()
        return received.status

    def on_rejected(event: Any) -> None:
        metrics.associations_refused.labels("calling_ae").inc()
        logger.warning(
            "association rejected: calling AE title not allowed",
            extra={"calling_ae": event.assoc.requestor.ae_title, "peer": event.assoc.requestor.address},
        )

    handlers: list[Any] = [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_C_ECHO, lambda event: 0x0000),
        (evt.EVT_REJECTED, on_rejected),
    ]
    server = ae.start_server(
        (settings.dicom_host, settings.dicom_port),
        block=False,
        evt_handlers=handlers,
        ssl_context=tls_context(settings),
    )
    assert server is not None
    networks = settings.allowed_networks

    def verify_request(request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> bool:
        # socketserver asks this before any byte is read: an unknown peer learns nothing.
        if not networks:
            return True
        try:
            address = ipaddress.ip_address(str(client_address[0]))
        except ValueError:
            address = None
        if address is not None and any(address in network for network in networks):
            return True
        metrics.associations_refused.labels("peer").inc()
        logger.warning("connection refused: peer address not allowed", extra={"peer": str(client_address[0])})
        return False

    server.verify_request = verify_request  # type: ignore[method-assign]
    if not settings.allowed_aes:
        logger.warning("DICOM intake open to any calling AE title (CXR_DICOM_ALLOWED_AES is empty)")
    logger.info(
        "DICOM SCP listening",
        extra={
            "ae_title": settings.dicom_ae_title,
            "host": settings.dicom_host,
            "port": settings.dicom_port,
            "tls": settings.dicom_tls_cert is not None,
        },
    )
    return server
