"""A model that fails validation stops the server before it serves anything, and says why."""

import json
import logging
from pathlib import Path

import pytest

from bench.service_process import free_port
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from service.main import create_app
from service.settings import Settings
from tests.service.live import AUTH_HEADERS, ThreadedServer, run_python, service_env


def _tamper(model_dir: Path) -> None:
    onnx_path = model_dir / ONNX_FILENAME
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 0xFF
    onnx_path.write_bytes(bytes(data))


def test_tampered_model_stops_the_command_with_a_clear_message(model_copy: Path, api_keys_file: Path) -> None:
    _tamper(model_copy)
    result = run_python(
        "-m",
        "service",
        env=service_env(model_dir=str(model_copy), port=str(free_port()), api_keys_file=str(api_keys_file)),
    )
    assert result.returncode == 3, result.stderr
    critical = [json.loads(line) for line in result.stderr.splitlines() if '"level": "critical"' in line]
    assert critical, result.stderr
    assert critical[0]["msg"].startswith("refusing to start: ")
    assert "sha256" in critical[0]["msg"] and "Refusing to serve it" in critical[0]["msg"]


def test_card_graph_mismatch_stops_the_app(
    model_copy: Path, api_keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card_path = model_copy / CARD_FILENAME
    card = json.loads(card_path.read_text())
    card["pixel_contract"]["height"] += 8
    card_path.write_text(json.dumps(card))
    app = create_app(Settings(model_dir=model_copy, execution_provider="cpu", api_keys_file=api_keys_file))
    with (
        caplog.at_level(logging.CRITICAL, logger="service.main"),
        pytest.raises(RuntimeError, match="did not start"),
    ):
        ThreadedServer(app).start()
    messages = [r.getMessage() for r in caplog.records if r.name == "service.main"]
    assert any("refusing to start" in m and "pixel_contract" in m for m in messages), messages


def test_not_ready_until_the_model_is_loaded(tiny_model_dir: Path, api_keys_file: Path) -> None:
    """An app whose lifespan has not run (no model yet): alive, but not ready, and says so."""
    import asyncio

    import httpx

    app = create_app(Settings(model_dir=tiny_model_dir, api_keys_file=api_keys_file))

    async def probe() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://service", headers=AUTH_HEADERS
        ) as client:
            return {
                "healthz": await client.get("/healthz"),
                "readyz": await client.get("/readyz"),
                "models": await client.get("/v1/models"),
                "predict": await client.post("/v1/predict", files={"file": ("f", b"x")}),
            }

    responses = asyncio.run(probe())
    assert responses["healthz"].status_code == 200
    assert (responses["readyz"].status_code, responses["readyz"].json()["code"]) == (503, "not_ready")
    for name in ("models", "predict"):
        assert (responses[name].status_code, responses[name].json()["code"]) == (503, "model_not_loaded")
