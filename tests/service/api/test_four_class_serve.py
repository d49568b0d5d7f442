"""A four-class model (as the leukemia study's) through the real pipeline: synthetic films built in
code, trained and exported by the training package with its OOD gate fitted on its own films, then
served over HTTP on loopback as it is: argmax, no binary operating point, Grad-CAM of the predicted
class."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME
from tests.conftest import tiny_train_config
from tests.factories import chest_like, png_bytes
from tests.service.live import live_client, post_file, strict_json

SIZE = 64
# Four classes told apart by where a bright blob sits (none, left, right, top): learnable in seconds.
CLASSES = ("Benign", "Early", "Pre", "Pro")
_CENTRES = {1: (20, 32), 2: (44, 32), 3: (32, 14)}
PER_CLASS = 16


def _film(label: int, index: int) -> np.ndarray:
    plane = chest_like(SIZE, SIZE, seed=100 * label + index)
    if label in _CENTRES:
        x, y = _CENTRES[label]
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        plane = np.clip(plane + 0.6 * np.exp(-(((xx - x) / 7.0) ** 2 + ((yy - y) / 7.0) ** 2)), 0.0, 1.0)
    return plane


@pytest.fixture(scope="module")
def four_class_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("four-class")
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(PER_CLASS):
            (root / name / f"cell_{i}.png").write_bytes(png_bytes(_film(label, i)))
    return root


@pytest.fixture(scope="module")
def four_class_model(four_class_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export.exporter import export_run
    from training.fit.engine import train

    config = tiny_train_config(
        four_class_data,
        tmp_path_factory.mktemp("runs"),
        "four-class",
        image_size=SIZE,
        split_method="image",  # no patient ids, as in the leukemia set
        val_fraction=0.25,
        finetune_epochs=8,
        patience=8,
    )
    run_dir = train(config).run_dir
    return export_run(run_dir, tmp_path_factory.mktemp("store"), "leukemia-like", "1", ood=True)


@pytest.fixture(scope="module")
def four_class_client(four_class_model: Path, api_keys_file: Path) -> Iterator[httpx.Client]:
    yield from live_client(four_class_model, api_keys_file)


def test_the_card_has_four_classes_no_operating_point_and_its_own_ood_gate(four_class_model: Path) -> None:
    card = ModelCard.model_validate_json((four_class_model / CARD_FILENAME).read_bytes())
    assert card.class_names == list(CLASSES)
    assert card.decision_threshold is None
    assert card.ood is not None and card.ood.threshold > 0


def test_models_endpoint_serves_it_as_it_is(four_class_client: httpx.Client) -> None:
    response = four_class_client.get("/v1/models")
    assert response.status_code == 200, response.text
    info = strict_json(response)
    assert info["class_names"] == list(CLASSES)
    assert info["decision_threshold"] is None
    assert info["out_of_distribution"] is not None


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_predict_is_the_argmax_with_the_predicted_class_grad_cam(
    four_class_client: httpx.Client, label: int
) -> None:
    # A training film: in distribution for the gate fitted on this model's own films.
    response = post_file(four_class_client, png_bytes(_film(label, 0)), filename="cell.png")
    assert response.status_code == 200, response.text
    body = strict_json(response)
    probabilities = body["probabilities"]
    assert list(probabilities) == list(CLASSES)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert body["predicted_class"] == max(probabilities, key=probabilities.__getitem__)
    assert body["threshold"] is None and body["triage"] is None
    assert body["gradcam"]["class_name"] == body["predicted_class"]
    gate = body["out_of_distribution"]
    assert gate is not None and gate["score"] <= gate["threshold"]
