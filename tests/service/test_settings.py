"""Settings come from CXR_* variables and refuse bad values before anything starts."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, is_loopback, unknown_cxr_variables
from tests.service.live import run_python, service_env


@pytest.fixture(autouse=True)
def _no_cxr_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [key for key in os.environ if key.startswith("CXR_")]:
        monkeypatch.delenv(name)


def test_defaults_bind_loopback() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.model_store == Path("models")
    assert settings.model_name == "cxr-pneumonia"
    assert settings.model_version == "latest"
    assert settings.model_dir is None
    assert settings.max_upload_bytes == 32 * 1024 * 1024
    assert settings.max_pixels == 50_000_000
    assert settings.overlay_max_side == 512
    assert settings.execution_provider == "auto"
    assert settings.intra_op_threads == 0


def test_defaults_are_closed_and_bounded() -> None:
    settings = Settings()
    assert (settings.auth, settings.metrics_auth, settings.api_keys_file) == ("required", "required", None)
    assert (settings.max_concurrent_predictions, settings.max_queued, settings.request_timeout_s) == (
        16,
        64,
        30.0,
    )
    assert (settings.max_batch_size, settings.batch_wait_ms, settings.decode_threads) == (2, 0.0, 0)
    assert settings.max_batch_size <= settings.max_concurrent_predictions  # else batches never fill
    assert settings.api_keys_reload_s == 1.0
    assert settings.audit_hash_key_file is None


def test_exposing_the_port_takes_an_explicit_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_loopback(Settings().host)
    monkeypatch.setenv("CXR_HOST", "0.0.0.0")
    assert Settings().host == "0.0.0.0"
    assert not is_loopback(Settings().host)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("cxr.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_access_and_limit_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXR_AUTH", "Disabled")
    monkeypatch.setenv("CXR_METRICS_AUTH", "DISABLED")
    monkeypatch.setenv("CXR_API_KEYS_FILE", str(tmp_path / "keys"))
    monkeypatch.setenv("CXR_API_KEYS_RELOAD_S", "5")
    monkeypatch.setenv("CXR_MAX_QUEUED", "0")
    monkeypatch.setenv("CXR_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("CXR_AUDIT_HASH_KEY_FILE", str(tmp_path / "uid_key"))
    settings = Settings()
    assert (settings.auth, settings.metrics_auth) == ("disabled", "disabled")
    assert (settings.api_keys_file, settings.api_keys_reload_s) == (tmp_path / "keys", 5.0)
    assert (settings.max_queued, settings.request_timeout_s) == (0, 2.5)
    assert settings.audit_hash_key_file == tmp_path / "uid_key"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXR_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("CXR_PORT", "9100")
    monkeypatch.setenv("CXR_EXECUTION_PROVIDER", "CPU")
    monkeypatch.setenv("CXR_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CXR_MAX_UPLOAD_BYTES", "1048576")
    settings = Settings()
    assert (settings.model_dir, settings.port, settings.execution_provider) == (tmp_path, 9100, "cpu")
    assert (settings.log_level, settings.max_upload_bytes) == ("debug", 1_048_576)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CXR_PORT", "http"),
        ("CXR_PORT", "70000"),
        ("CXR_MAX_UPLOAD_BYTES", "0"),
        ("CXR_MAX_PIXELS", "-1"),
        ("CXR_OVERLAY_MAX_SIDE", "2"),
        ("CXR_EXECUTION_PROVIDER", "tpu"),
        ("CXR_INTRA_OP_THREADS", "-2"),
        ("CXR_LOG_LEVEL", "verbose"),
        ("CXR_MODEL_VERSION", "../../etc"),
        ("CXR_MODEL_NAME", "a/b"),
        ("CXR_AUTH", "off"),
        ("CXR_METRICS_AUTH", "open"),
        ("CXR_MAX_QUEUED", "-1"),
        ("CXR_REQUEST_TIMEOUT_S", "0"),
        ("CXR_API_KEYS_RELOAD_S", "-1"),
    ],
)
def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(ValidationError):
        Settings(max_upload_byte=10)  # type: ignore[call-arg]


def test_the_command_exits_with_a_clear_message_on_bad_settings() -> None:
    result = run_python("-m", "service", env=service_env(port="not-a-port"))
    assert result.returncode == 2
    assert "invalid CXR_* configuration" in result.stderr
    assert "port" in result.stderr


@pytest.mark.parametrize("key_file", ["unset", "broken"])
def test_the_command_refuses_to_start_without_usable_api_keys(tmp_path: Path, key_file: str) -> None:
    env = service_env(port="8000")
    if key_file == "broken":
        (tmp_path / "keys").write_text("pacs:a-secret-that-is-long-enough\nris-key-without-a-secret\n")
        env["CXR_API_KEYS_FILE"] = str(tmp_path / "keys")
    result = run_python("-m", "service", env=env)
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr and "CXR_API_KEYS_FILE" in result.stderr
    if key_file == "broken":
        assert "line 2" in result.stderr
        assert "a-secret-that-is-long-enough" not in result.stderr and "ris-key" not in result.stderr
    else:
        assert "CXR_AUTH=disabled" in result.stderr


def test_unknown_variables_are_reported_by_name() -> None:
    environ = {"CXR_PORT": "1", "CXR_MAX_UPLOAD_BYTE": "5", "cxr_model_dir": "/m", "HOME": "/root"}
    assert unknown_cxr_variables(environ) == ["CXR_MAX_UPLOAD_BYTE"]
