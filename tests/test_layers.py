"""The folders of service/ and training/ form layers: every import points down (docs/architecture.md).

Function-level (lazy) imports count too: a lazy import that points up is still a cycle in the design.
"""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A unit may import from its own rank or below; units sharing a rank may not import
# each other unless listed in ALLOWED.
LAYERS = {
    "service": [
        ["contract"],
        ["settings", "errors", "libc"],
        ["observability", "outputs"],
        ["security", "store"],
        ["inference"],
        ["lifecycle"],
        ["pacs"],
        ["api"],
        ["main", "server"],
        ["__main__"],
    ],
    "training": [
        ["stats", "backbones"],
        ["config"],
        ["data"],
        ["fit"],
        ["ood"],
        ["export"],
        ["evaluation"],
        ["release"],
        ["study"],
        ["cli"],
        ["__main__"],
    ],
}
ALLOWED = {("service.security", "service.observability"), ("service.store", "service.settings")}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in LAYERS or len(parts) < 2:
        return None
    return f"{parts[0]}.{parts[1]}"


def _rank(unit: str) -> int:
    package, name = unit.split(".")
    for rank, names in enumerate(LAYERS[package]):
        if name in names:
            return rank
    raise AssertionError(f"{unit} is in no layer of tests/test_layers.py: place it in docs/architecture.md")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _module_paths(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_import_points_down(package: str) -> None:
    upward = []
    for path in _module_paths(package):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        source = _unit(module)
        if source is None:  # the package's own __init__
            continue
        for name in _imports(path):
            target = _unit(name)
            if target is None or target == source or target.split(".")[0] != package:
                continue
            if (
                not (REPO_ROOT / Path(*target.split("."))).exists()
                and not (REPO_ROOT / Path(*target.split("."))).with_suffix(".py").exists()
            ):
                continue  # a name imported from the package's __init__, not a module
            if _rank(target) > _rank(source) or (
                _rank(target) == _rank(source) and (source, target) not in ALLOWED
            ):
                upward.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_the_service_never_imports_training() -> None:
    offending = [
        str(path.relative_to(REPO_ROOT))
        for path in _module_paths("service")
        if any(name.split(".")[0] == "training" for name in _imports(path))
    ]
    assert not offending
