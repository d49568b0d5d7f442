"""Settings come from CXR_* variables and refuse bad values before anything starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, unknown_cxr_variables
from tests.service.live import REPO_ROOT, service_env


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
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO_ROOT,
        env=service_env(port="not-a-port"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid CXR_* configuration" in result.stderr
    assert "port" in result.stderr


def test_unknown_variables_are_reported_by_name() -> None:
    environ = {"CXR_PORT": "1", "CXR_MAX_UPLOAD_BYTE": "5", "cxr_model_dir": "/m", "HOME": "/root"}
    assert unknown_cxr_variables(environ) == ["CXR_MAX_UPLOAD_BYTE"]
