"""API-key access control through a real server: who gets in, with what scope, and when they get told."""

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.main import create_app
from service.security.access import AccessConfigError
from service.settings import Settings
from tests.factories import chest_like, png_bytes
from tests.service.live import ThreadedServer, metric_value, post_file, strict_json, write_api_keys
from tests.service.raw_http import RawUpload

FILM = png_bytes(chest_like(96, 80, seed=31))
PACS = "pacs-secret-0123456789"  # predict only
PROM = "prometheus-secret-0123456789"  # metrics only
OPS = "ops-secret-0123456789abc"  # predict, metrics, admin
ROTATED = "pacs-secret-rotated-9876543210"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _keys(path: Path) -> Path:
    return write_api_keys(
        path, f"pacs:{PACS}", f"prometheus:{PROM}:metrics", f"ops:{OPS}:predict,metrics,admin"
    )


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _keys(tmp_path_factory.mktemp("access") / "api_keys")


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, keys_file: Path) -> Iterator[str]:
    # Checked on every request, so the rotation test needs no waiting.
    settings = Settings(
        model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=keys_file, api_keys_reload_s=0.0
    )
    with ThreadedServer(create_app(settings)) as live:
        yield live.url


@pytest.fixture
def anonymous(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30.0) as client:
        yield client


def _refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, strict_json(response)["code"]


def test_probes_are_open_and_everything_else_needs_a_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    for method, path in [
        ("POST", "/v1/predict"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
        ("POST", "/v1/admin/reload"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/no-such-route"),  # unknown paths too: a scanner learns nothing about routes
    ]:
        response = anonymous.request(method, path)
        assert _refusal(response) == (401, "missing_api_key"), (method, path)
        assert response.headers["www-authenticate"] == 'Bearer realm="cxr-triage"'


def test_the_review_page_files_are_open_and_hold_no_data(anonymous: httpx.Client) -> None:
    # The page asks for a key itself; its files are the same for everyone.
    assert anonymous.get("/ui").status_code == 308
    assert anonymous.get("/ui/").status_code == 200
    assert anonymous.get("/ui/app.js").status_code == 200
    assert anonymous.get("/ui/no-such-file.js").status_code == 404
    for path in ("/uiv1/models", "/ui-admin", "/v1/ui"):  # a shared prefix is not the page
        assert _refusal(anonymous.get(path)) == (401, "missing_api_key"), path


@pytest.mark.parametrize(
    "headers",
    [
        bearer(PACS + "x"),
        bearer(PACS[:-1]),
        {"X-API-Key": "not-a-key-at-all-000000"},
        {"Authorization": f"Basic {PACS}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {PACS}", "X-API-Key": OPS},  # two different keys: refused, not guessed
    ],
    ids=["extra-char", "prefix", "x-api-key-unknown", "basic-scheme", "empty-bearer", "conflicting"],
)
def test_a_wrong_key_is_401_invalid(server: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server, headers=headers) as client:
        response = post_file(client, FILM)
    assert _refusal(response) == (401, "invalid_api_key")
    assert response.headers["www-authenticate"] == 'Bearer realm="cxr-triage", error="invalid_token"'
    assert PACS not in response.text and OPS not in response.text


@pytest.mark.parametrize("headers", [bearer(PACS), {"X-API-Key": PACS}, {"authorization": f"bearer  {PACS}"}])
def test_a_valid_key_in_either_header_predicts(server: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=server, headers=headers) as client:
        response = post_file(client, FILM, params={"overlay": "false"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("secret", "method", "path", "expected"),
    [
        (PACS, "GET", "/v1/models", 200),
        (PACS, "GET", "/metrics", 403),
        (PACS, "POST", "/v1/admin/reload", 403),
        (PACS, "GET", "/v1/admin", 403),
        (PROM, "GET", "/metrics", 200),
        (PROM, "GET", "/v1/models", 403),
        (PROM, "POST", "/v1/predict", 403),
        (OPS, "GET", "/metrics", 200),
        (OPS, "GET", "/v1/admin/no-such-action", 404),  # past access control: the router answers
    ],
)
def test_scopes_decide_what_a_valid_key_may_do(
    server: str, secret: str, method: str, path: str, expected: int
) -> None:
    with httpx.Client(base_url=server, headers=bearer(secret)) as client:
        response = client.request(method, path)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert strict_json(response)["code"] == "forbidden"
        assert "www-authenticate" not in response.headers


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(server: str) -> None:
    # Headers promise a body that is never sent: the answer can only come from the headers.
    with RawUpload(server, FILM, {}, send=0) as upload:
        status, headers, body = upload.response()
    assert status == 401
    assert b"missing_api_key" in body
    assert headers["www-authenticate"].startswith("Bearer")


def test_refusals_are_counted_by_reason_and_route(server: str) -> None:
    with httpx.Client(base_url=server, headers=bearer(OPS)) as ops:

        def count(name: str, **labels: str) -> float:
            return metric_value(ops, name, **labels)

        before = (
            count("cxr_auth_failures_total", reason="missing_api_key"),
            count("cxr_auth_failures_total", reason="forbidden"),
            count("cxr_http_requests_total", route="/v1/predict", method="POST", status="401"),
        )
        httpx.post(f"{server}/v1/predict")
        httpx.get(f"{server}/metrics", headers=bearer(PACS))
        after = (
            count("cxr_auth_failures_total", reason="missing_api_key"),
            count("cxr_auth_failures_total", reason="forbidden"),
            count("cxr_http_requests_total", route="/v1/predict", method="POST", status="401"),
        )
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_keys_rotate_without_a_restart_and_a_broken_file_changes_nothing(
    server: str, keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        write_api_keys(keys_file, f"pacs-2:{ROTATED}", f"ops:{OPS}:predict,metrics,admin")
        assert httpx.get(f"{server}/v1/models", headers=bearer(ROTATED)).status_code == 200
        assert httpx.get(f"{server}/v1/models", headers=bearer(PACS)).status_code == 401

        with caplog.at_level(logging.WARNING, logger="service.security.api_keys"):
            keys_file.write_text(f"pacs-3 {PACS}\n")  # a botched edit: no ':'
            assert httpx.get(f"{server}/v1/models", headers=bearer(ROTATED)).status_code == 200
        assert any("previous keys stay in force" in r.getMessage() for r in caplog.records)
        assert PACS not in caplog.text
    finally:
        _keys(keys_file)


def test_metrics_can_be_opened_for_a_scrape_while_the_api_stays_closed(
    tiny_model_dir: Path, keys_file: Path
) -> None:
    settings = Settings(
        model_dir=tiny_model_dir, execution_provider="cpu", api_keys_file=keys_file, metrics_auth="disabled"
    )
    with ThreadedServer(create_app(settings)) as live:
        assert httpx.get(f"{live.url}/metrics").status_code == 200
        assert httpx.get(f"{live.url}/v1/models").status_code == 401
        assert httpx.post(f"{live.url}/v1/admin/reload").status_code == 401


def test_auth_is_off_only_when_disabled_explicitly_and_then_says_so(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(AccessConfigError, match="CXR_API_KEYS_FILE is not set"):
        create_app(Settings(model_dir=tiny_model_dir, execution_provider="cpu"))

    app = create_app(Settings(model_dir=tiny_model_dir, execution_provider="cpu", auth="disabled"))
    with (
        caplog.at_level(logging.WARNING, logger="service.main"),
        ThreadedServer(app) as live,
        httpx.Client(base_url=live.url) as client,
    ):
        assert post_file(client, FILM).status_code == 200
        assert client.get("/metrics").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "service.main"]
    assert any("AUTHENTICATION DISABLED" in message for message in warnings), warnings
