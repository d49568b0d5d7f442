"""Lint and render helm/cxr-triage with real Helm (helm-sdkpy bundles Helm's Go library).

Rendering is a real ``helm install`` against :mod:`tests.helm.fake_cluster`; linting is Helm's lint
action. helm-sdkpy's lint takes no values, so a scenario is linted as a copy of the chart whose
values.yaml is the scenario merged over the defaults the way Helm merges them.
"""

import asyncio
import copy
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "cxr-triage"
RELEASE = "cxr-triage"
NAMESPACE = "cxr"

# Helm's support.Severity: 1 info, 2 warning, 3 error.
LINT_WARNING = 2
_SEVERITY_NAMES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}

Manifest = dict[str, Any]


def scenario_values(name: str) -> dict[str, Any]:
    """Values of a scenario: {} for "default", else ci/<name>.yaml."""
    if name == "default":
        return {}
    loaded = yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"ci/{name}.yaml is not a mapping"
    return loaded


def scenarios() -> list[str]:
    return ["default", *sorted(path.stem for path in (CHART / "ci").glob("*.yaml"))]


def coalesce(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over chart defaults: maps merge, null deletes, the rest replaces."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class LintMessage:
    severity: int
    path: str

    def __str__(self) -> str:
        # helm-sdkpy serialises Helm's error values as {}, so only severity and file survive.
        return f"{_SEVERITY_NAMES.get(self.severity, self.severity)} in {self.path}"


@dataclass(frozen=True)
class Release:
    manifests: list[Manifest]
    notes: str

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str) -> Manifest:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]


class Helm:
    def __init__(self, sdk: ModuleType, kubeconfig: str, workdir: Path) -> None:
        self._sdk = sdk
        self._kubeconfig = kubeconfig
        self._workdir = workdir

    def render(self, values: Mapping[str, Any]) -> Release:
        """``helm install`` of the chart with ``values``; raises the SDK's InstallError on failure."""
        config = self._sdk.Configuration(namespace=NAMESPACE, kubeconfig=self._kubeconfig)
        # helm-sdkpy sends no values at all for an empty dict; a placeholder key would trip the schema.
        release: dict[str, Any] = asyncio.run(
            self._sdk.Install(config).run(RELEASE, str(CHART), values=dict(values) or None, wait=False)
        )
        manifests = [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]
        return Release(manifests=manifests, notes=str(release.get("info", {}).get("notes", "")))

    def lint(self, values: Mapping[str, Any]) -> list[LintMessage]:
        """Helm's lint of the chart with ``values`` merged over its defaults: every message."""
        copy_dir = self._workdir / f"lint-{len(list(self._workdir.iterdir()))}" / CHART.name
        shutil.copytree(CHART, copy_dir)
        defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
        (copy_dir / "values.yaml").write_text(yaml.safe_dump(coalesce(defaults, values)), encoding="utf-8")
        config = self._sdk.Configuration(namespace=NAMESPACE)
        result: dict[str, Any] = asyncio.run(self._sdk.Lint(config).run(str(copy_dir)))
        messages = [LintMessage(int(m["Severity"]), str(m["Path"])) for m in result.get("Messages") or []]
        if result.get("Errors") and not any(m.severity > LINT_WARNING for m in messages):
            messages.append(LintMessage(3, "(lint errors without a message)"))
        return messages
