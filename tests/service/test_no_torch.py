"""The service must import, start and predict without torch (the serving image has none)."""

import ast
from pathlib import Path

from tests.service.live import REPO_ROOT, run_python, service_env

# Training-only packages: none may be imported anywhere under service/.
FORBIDDEN_TOP_LEVEL = {
    "torch",
    "torchvision",
    "timm",
    "training",
    "onnx",
    "onnxscript",
    "sklearn",
    "matplotlib",
}

SCRIPT = """
import sys
for name in ("torch", "torchvision", "timm"):
    sys.modules[name] = None  # any import of them now raises ImportError

from tests.factories import chest_like, dicom_bytes, dicom_dataset

# The fixture's DICOM builder lives in training/data (torch-free); forget it, so that any import of
# training by the service below is seen.
film = dicom_bytes(dicom_dataset(chest_like()))
for name in [n for n in sys.modules if n.split(".")[0] == "training"]:
    del sys.modules[name]

import httpx
from service.main import create_app
from service.settings import Settings
from tests.service.live import AUTH_HEADERS, ThreadedServer, post_file

app = create_app(Settings(model_dir=sys.argv[1], execution_provider="cpu", api_keys_file=sys.argv[2]))
with ThreadedServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH_HEADERS) as client:
    response = post_file(client, film)
    assert response.status_code == 200, response.text
    assert response.json()["gradcam"]["png_base64"]
loaded = [n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in {"torch", "training"}]
assert not loaded, loaded
print("served without torch")
"""


def test_service_runs_with_torch_unimportable(tiny_model_dir: Path, api_keys_file: Path) -> None:
    result = run_python("-c", SCRIPT, str(tiny_model_dir), str(api_keys_file), env=service_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served without torch" in result.stdout


def test_no_service_module_imports_training_packages() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN_TOP_LEVEL
            ]
    assert not offenders, offenders
