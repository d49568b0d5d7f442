"""schemathesis against the live service: every operation in its OpenAPI schema, with generated
valid and invalid requests, must answer without a 5xx and as its schema says (status codes,
content types, bodies, headers).

The schema is fetched from a real server on loopback; the server is a dedicated one (same settings
as the shared live server), because generated requests include operator actions such as a model
reload. schemathesis's pytest integration (``from_fixture``) does not run under pytest 9, so each
operation's hypothesis strategy is driven directly. Examples are bounded so this stays under a minute.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction, positive_data_acceptance
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from service.main import create_app
from service.settings import Settings
from tests.service.live import AUTH_HEADERS, ThreadedServer

Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}
CORE_OPERATIONS = {"POST /v1/predict", "GET /v1/models", "GET /healthz", "GET /readyz", "GET /metrics"}
# No schema can say "a decodable frontal chest film": schema-valid uploads (random bytes in the file
# part) get their documented 4xx, so only there is "valid data must be accepted" not checked.
EXCLUDED_CHECKS: dict[str, list[CheckFunction]] = {"POST /v1/predict": [positive_data_acceptance]}


@pytest.fixture(scope="module")
def conformance_server(live_settings: Settings) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(live_settings)) as server:
        yield server


def _label(operation: Operation) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _exercise(operation: Operation, mode: GenerationMode, base_url: str) -> None:
    excluded = EXCLUDED_CHECKS.get(_label(operation), [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case: Case[Operation]) -> None:
        case.call_and_validate(base_url=base_url, headers=AUTH_HEADERS, excluded_checks=excluded)

    run()


def test_every_operation_conforms_to_its_schema(conformance_server: ThreadedServer) -> None:
    schema = schemathesis.openapi.from_url(f"{conformance_server.url}/openapi.json", headers=AUTH_HEADERS)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the schema has operations schemathesis cannot read"
    labels = {_label(operation) for operation in operations}
    assert labels >= CORE_OPERATIONS, labels
    failures: list[str] = []
    for operation in operations:
        for mode in EXAMPLES:
            try:
                _exercise(operation, mode, conformance_server.url)
            except Unsatisfiable:  # an operation without parameters or body has nothing to negate
                assert mode is GenerationMode.NEGATIVE, _label(operation)
            except (Exception, BaseExceptionGroup) as error:  # report every operation's failures together
                failures.append(f"{_label(operation)} ({mode.value}): {error!r}")
    assert not failures, "\n\n".join(failures)
    assert httpx.get(f"{conformance_server.url}/healthz").status_code == 200
