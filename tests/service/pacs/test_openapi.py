"""schemathesis against a gateway-enabled service: the PACS routes answer generated valid and invalid
requests as their OpenAPI schema says, and never with a 5xx (as tests/service/api does for the rest)."""

from pathlib import Path

import pytest
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from service.settings import Settings
from tests.service.api import test_openapi_conformance as conformance
from tests.service.live import AUTH_HEADERS
from tests.service.pacs.harness import gateway_server, pacs_settings

_INSTANCE = "GET /v1/studies/{study_instance_uid}/instances/{sop_instance_uid}"
# One film and its results: a schema cannot name a UID this gateway received, so schema-valid UIDs
# get their documented 404 instance_not_found.
RESULT_OPERATIONS = {
    _INSTANCE,
    *(f"{_INSTANCE}/{name}" for name in ("overlay.png", "film.png", "sc.dcm", "sr.dcm")),
}
PACS_OPERATIONS = {
    "POST /dicomweb/studies",
    "POST /dicomweb/studies/{study}",
    "GET /v1/studies",
    *RESULT_OPERATIONS,
}


def test_pacs_operations_conform_to_their_schema(
    tmp_path: Path, service_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A schema cannot say "a DICOM chest film": schema-valid STOW bodies get their documented 4xx.
    for label in ("POST /dicomweb/studies", "POST /dicomweb/studies/{study}", *RESULT_OPERATIONS):
        monkeypatch.setitem(conformance.EXCLUDED_CHECKS, label, [positive_data_acceptance])
    with gateway_server(service_settings, pacs_settings(tmp_path / "spool", dicom_port=None)) as (server, _):
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=AUTH_HEADERS)
        operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
        selected = [op for op in operations if conformance._label(op) in PACS_OPERATIONS]
        assert {conformance._label(op) for op in selected} == PACS_OPERATIONS
        failures: list[str] = []
        for operation in selected:
            for mode in conformance.EXAMPLES:
                try:
                    conformance._exercise(operation, mode, server.url)
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE
                except (Exception, BaseExceptionGroup) as error:
                    failures.append(f"{conformance._label(operation)} ({mode.value}): {error!r}")
    assert not failures, "\n\n".join(failures)
