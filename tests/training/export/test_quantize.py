"""INT8 quantisation of the session's tiny model: a new, measured store version the service loads."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from tests.factories import png_bytes
from training.export.quantize import mean_cam_correlation, quantize_model
from training.export.staging import sha256_file
from training.ood.film_set import noise_images


@pytest.fixture(scope="module")
def quantised(
    tiny_ood_model_dir: Path, tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    store = tmp_path_factory.mktemp("store") / "cxr-tiny"
    source = store / "1"
    shutil.copytree(tiny_ood_model_dir, source)
    return source, quantize_model(source, tiny_run_dir)


def _card(model_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())


def test_quantised_version_is_a_measured_int8_graph(quantised: tuple[Path, Path]) -> None:
    source, target = quantised
    assert target == source.parent / "1-int8"
    card, source_card = _card(target), _card(source)
    ops = Counter(node.op_type for node in onnx.load(str(target / ONNX_FILENAME)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert card.onnx_sha256 == sha256_file(target / ONNX_FILENAME)
    q = card.quantisation
    assert q is not None and q.source_version == "1" and q.source_sha256 == source_card.onnx_sha256
    assert q.source_validation_metrics["auc"] == pytest.approx(
        source_card.validation_metrics["auc"], abs=1e-6
    )
    # The tiny model is barely trained, so only sanity bounds: int8 must still track the float graph.
    assert q.decision_agreement >= 0.5 and q.cam_correlation > 0.5
    assert card.validation_metrics["distinct_predicted_classes"] == 2
    assert card.ood is not None and source_card.ood is not None and card.ood.threshold > 0
    assert card.pixel_contract == source_card.pixel_contract and card.class_names == source_card.class_names


def test_service_serves_the_quantised_version_like_any_other(quantised: tuple[Path, Path]) -> None:
    _, target = quantised
    runtime = ModelRuntime.load(Settings(model_dir=target, execution_provider="cpu"))
    film = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
    image, _ = runtime.prepare(png_bytes(film), max_pixels=10**6)
    result = runtime.infer(image)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.isfinite(result.cams)) and result.ood_score is not None


def test_refuses_to_requantise_or_overwrite(quantised: tuple[Path, Path], tiny_run_dir: Path) -> None:
    source, target = quantised
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(target, tiny_run_dir)
    with pytest.raises(FileExistsError):
        quantize_model(source, tiny_run_dir)


def test_cam_correlation_is_pearson_per_map() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 2, 4, 4)).astype(np.float32)
    assert mean_cam_correlation(maps, maps * 2 + 1) == pytest.approx(1.0)
    assert mean_cam_correlation(maps, -maps) == pytest.approx(-1.0)
    flat = np.zeros_like(maps)
    assert mean_cam_correlation(flat, flat) == pytest.approx(1.0)


def test_fp16_version_is_a_measured_half_precision_graph_the_service_loads(
    quantised: tuple[Path, Path], tiny_run_dir: Path
) -> None:
    source, _ = quantised
    target = quantize_model(source, tiny_run_dir, precision="fp16")
    assert target == source.parent / "1-fp16"
    graph = onnx.load(str(target / ONNX_FILENAME)).graph
    kinds = Counter(t.data_type for t in graph.initializer)
    assert kinds[onnx.TensorProto.FLOAT16] > 0 and kinds[onnx.TensorProto.FLOAT] == 0  # weights in fp16 ...
    # ... but the pixel contract's input and every output stay float32.
    float32 = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in graph.input] == [float32]
    assert {o.type.tensor_type.elem_type for o in graph.output} == {float32}
    card, source_card = _card(target), _card(source)
    q = card.quantisation
    assert q is not None and q.method.startswith("onnxruntime.transformers.float16")
    assert q.calibration_films == 0
    # fp16 keeps about three decimal digits: the float graph's calls and maps are kept.
    assert q.max_probability_difference < 0.01 and q.decision_agreement >= 0.95 and q.cam_correlation > 0.99
    assert card.validation_metrics["auc"] == pytest.approx(source_card.validation_metrics["auc"], abs=0.01)
    runtime = ModelRuntime.load(Settings(model_dir=target, execution_provider="cpu"))
    image, _ = runtime.prepare(png_bytes(np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)), max_pixels=10**6)
    result = runtime.infer(image)
    assert result.probabilities.dtype == np.float32 and result.probabilities.sum() == pytest.approx(
        1.0, abs=1e-3
    )
    # What the gate refuses keeps a finite score in half precision (float16 ends at 65,504, and the
    # service takes an inf score for a broken model).
    for case in noise_images(2):
        scored = runtime.infer(runtime.prepare(case.png, max_pixels=10**6)[0])
        assert scored.ood_score is not None and np.isfinite(scored.ood_score)
