"""The in-graph out-of-distribution score: same in ONNX as in PyTorch, and it separates real films
from things that are not chest films, on the tiny model trained for the session."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.contract import ModelCard, load_model_input
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from training.export.exporter import fit_ood
from training.export.gradcam_graph import ExportGraph
from training.fit.checkpoint import load_split, load_trained_model
from training.ood.film_set import blank_images, documents_and_screenshots, noise_images


def test_onnx_ood_score_matches_pytorch(tiny_ood_model_dir: Path, tiny_run_dir: Path) -> None:
    card = ModelCard.model_validate_json((tiny_ood_model_dir / CARD_FILENAME).read_text())
    assert card.ood is not None
    session = ort.InferenceSession(
        str(tiny_ood_model_dir / ONNX_FILENAME), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in session.get_outputs()] == ["probabilities", "cam", "ood_score"]
    model, _, summary = load_trained_model(tiny_run_dir)
    data = load_split(tiny_run_dir, summary.class_names, summary.image_size)
    images = torch.cat([data.validation.inputs, torch.rand(3, 1, 64, 64)])
    (onnx_scores,) = session.run(["ood_score"], {"image": images.numpy()})
    stats, _ = fit_ood(model, data, len(summary.class_names), annotated_share=0.0)
    with torch.no_grad():
        torch_scores = ExportGraph(model, ood=stats)(images)[2].numpy()
    assert onnx_scores.shape == (len(images),)
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=1e-4)


def test_threshold_is_a_validation_quantile(tiny_ood_model_dir: Path) -> None:
    card = ModelCard.model_validate_json((tiny_ood_model_dir / CARD_FILENAME).read_text())
    assert card.ood is not None
    assert card.ood.validation_rejection_rate <= 1 / 8  # at most one of the 8 validation films
    assert card.ood.validation_quantile == pytest.approx(0.995)


def test_non_films_score_above_the_threshold_and_training_films_below(
    tiny_ood_model_dir: Path, tiny_run_dir: Path
) -> None:
    card = ModelCard.model_validate_json((tiny_ood_model_dir / CARD_FILENAME).read_text())
    assert card.ood is not None
    session = ort.InferenceSession(
        str(tiny_ood_model_dir / ONNX_FILENAME), providers=["CPUExecutionProvider"]
    )

    def score(data: bytes) -> float:
        tensor, _ = load_model_input(data, 64, 64)
        return float(session.run(["ood_score"], {"image": tensor[np.newaxis]})[0][0])

    outliers = [*noise_images(2), *blank_images(), *documents_and_screenshots(2)]
    rejected = [case.name for case in outliers if score(case.png) > card.ood.threshold]
    assert len(rejected) == len(outliers), sorted({c.name for c in outliers} - set(rejected))
    _, _, summary = load_trained_model(tiny_run_dir)
    train_films = load_split(tiny_run_dir, summary.class_names, 64).train.samples[:10]
    accepted = [s for s in train_films if score(s.path.read_bytes()) <= card.ood.threshold]
    assert len(accepted) >= 9
