"""helm/cxr-triage/values.yaml and values.schema.json on their own, without Helm: every key is
commented, the schema is a valid draft-07 schema, and the defaults and every ci/ scenario satisfy it.
(Helm enforces the same schema at install time; tests/helm/test_chart.py checks that it does.)"""

import json
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.helm.chart_tools import CHART, coalesce, scenario_values, scenarios
from tests.tools import import_tool

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):")


@pytest.fixture(scope="module")
def jsonschema() -> ModuleType:
    # A dependency of kubernetes-validate, the chart tests' Kubernetes schema validator.
    module: ModuleType = import_tool(
        "jsonschema", "jsonschema is not installed (kubernetes-validate brings it)"
    )
    return module


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return loaded


def _defaults() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return loaded


def test_every_key_in_values_yaml_is_commented() -> None:
    """Each key has a comment on the line above. A key documented as a value ("# -- ...") may hold a
    Kubernetes object (resources, tolerations...), whose own fields need no comment of their own."""
    undocumented = []
    ancestors: list[tuple[int, bool]] = []  # (indent, documented as a value)
    comment = ""  # first line of the comment block right above, "" when the line above is no comment
    for number, line in enumerate((CHART / "values.yaml").read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            comment = ""
            continue
        if stripped.startswith("#"):
            comment = comment or stripped
            continue
        match = _KEY.match(line)
        if match:
            indent = len(match["indent"])
            while ancestors and ancestors[-1][0] >= indent:
                ancestors.pop()
            inside_a_value = any(is_value for _, is_value in ancestors)
            if not inside_a_value and not comment:
                undocumented.append(f"line {number}: {match['key']}")
            ancestors.append((indent, comment.startswith("# --")))
        comment = ""
    assert not undocumented, f"values.yaml keys without a comment: {undocumented}"


def test_schema_is_valid_draft_07(jsonschema: ModuleType) -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("scenario", scenarios())
def test_defaults_and_scenarios_satisfy_the_schema(jsonschema: ModuleType, scenario: str) -> None:
    values = coalesce(_defaults(), scenario_values(scenario))
    jsonschema.Draft7Validator(_schema()).validate(values)


def test_schema_forbids_unknown_keys_at_every_level_of_chart_values() -> None:
    """Every object the chart defines closes its properties, so a typo anywhere is an error."""
    open_objects = []

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        if "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(where or "/")
        for key, child in node.get("properties", {}).items():
            walk(child, f"{where}/{key}")
        for key, child in node.get("definitions", {}).items():
            walk(child, f"#/definitions/{key}")

    walk(_schema(), "")
    assert not open_objects, f"objects accepting unknown keys: {open_objects}"
