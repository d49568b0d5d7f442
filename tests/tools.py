"""Tools the deployment checks need (Helm's library, hadolint, Kubernetes schemas).

Away from CI a missing tool skips its tests with the reason. In CI (``CI=true``) it fails them:
``make setup`` installs every one, so a missing tool there is a broken install, and skipping would
turn the chart and image checks green without running them.
"""

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def missing_tool(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI must have it (make setup installs it)", pytrace=False)
    pytest.skip(reason)


def import_tool(module: str, reason: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        missing_tool(reason)
