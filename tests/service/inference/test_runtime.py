"""ModelRuntime: what it accepts, what it refuses (with a message that says why), how it decides."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from service.contract import ModelCard
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from service.inference.providers import (
    CPU,
    CUDA,
    TENSORRT,
    select_providers,
    session_options,
    tensorrt_options,
)
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from service.store.errors import ModelLoadError
from service.store.resolve import resolve_model_dir


def _load(model_dir: Path, **settings: Any) -> ModelRuntime:
    return ModelRuntime.load(Settings(model_dir=model_dir, execution_provider="cpu", **settings))


def _edit_card(model_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = model_dir / CARD_FILENAME
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))


def test_loads_the_tiny_model(tiny_model_dir: Path, card: ModelCard) -> None:
    runtime = _load(tiny_model_dir)
    assert runtime.provider == CPU
    assert runtime.sha256 == card.onnx_sha256
    assert runtime.class_names == card.class_names
    blank = np.zeros((1, card.pixel_contract.height, card.pixel_contract.width), dtype=np.float32)
    result = runtime.infer(blank)
    assert result.probabilities.shape == (len(card.class_names),)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert result.cams.ndim == 3 and result.cams.shape[0] == len(card.class_names)
    assert np.all(result.cams >= 0)


def test_tampered_onnx_is_refused(model_copy: Path) -> None:
    onnx_path = model_copy / ONNX_FILENAME
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match=r"sha256 .* but model_card\.json says .*Refusing"):
        _load(model_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["pixel_contract"].update(height=c["pixel_contract"]["height"] + 1),
            r"has shape .*pixel_contract",
        ),
        (
            lambda c: c["pixel_contract"].update(width=c["pixel_contract"]["width"] * 2),
            r"has shape .*pixel_contract",
        ),
        (lambda c: c["pixel_contract"].update(preprocessing="other-v0"), r"preprocessing 'other-v0'"),
        (lambda c: c["pixel_contract"].update(input_name="pixels"), r"input_name is 'pixels'"),
        (
            lambda c: c.update(class_names=[*c["class_names"], "EXTRA"], decision_threshold=None),
            r"classes|\(1, 3\)",
        ),
        (
            lambda c: c.update(decision_threshold={"positive_class": "CAT", "value": 0.5, "method": "x"}),
            r"positive_class 'CAT' is not one of",
        ),
        (lambda c: c.update(class_names=[c["class_names"][0]] * 2, decision_threshold=None), r"duplicates"),
        (lambda c: c.pop("onnx_sha256"), r"is invalid"),
    ],
    ids=[
        "height",
        "width",
        "preprocessing",
        "input-name",
        "class-count",
        "threshold-class",
        "dup-class",
        "schema",
    ],
)
def test_card_that_disagrees_is_refused(
    model_copy: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    _edit_card(model_copy, edit)
    with pytest.raises(ModelLoadError, match=message):
        _load(model_copy)


def test_graph_without_cam_output_is_refused(model_copy: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import hashlib

    model = onnx.load(str(model_copy / ONNX_FILENAME))
    kept = [o for o in model.graph.output if o.name != "cam"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    data = model.SerializeToString()
    (model_copy / ONNX_FILENAME).write_bytes(data)
    _edit_card(model_copy, lambda c: c.update(onnx_sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(ModelLoadError, match=r"missing \['cam'\]"):
        _load(model_copy)


def test_missing_files_are_named(model_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        _load(tmp_path / "nowhere")
    (model_copy / ONNX_FILENAME).unlink()
    with pytest.raises(ModelLoadError, match=r"model\.onnx not found"):
        _load(model_copy)
    (model_copy / CARD_FILENAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match="is invalid"):
        _load(model_copy)


def test_latest_is_the_last_sorted_version_with_a_card(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    for version in ("2024-01-01", "2024-03-01"):
        target = store / "cxr-pneumonia" / version
        target.mkdir(parents=True)
        for name in (CARD_FILENAME, ONNX_FILENAME):
            (target / name).write_bytes((tiny_model_dir / name).read_bytes())
    (store / "cxr-pneumonia" / "2024-12-01-incomplete").mkdir()  # no card: being written, ignored
    staging = store / "cxr-pneumonia" / ".staging-2099"  # hidden: an export not yet renamed into place
    staging.mkdir()
    (staging / CARD_FILENAME).write_bytes((tiny_model_dir / CARD_FILENAME).read_bytes())
    settings = Settings(model_store=store)
    assert resolve_model_dir(settings) == store / "cxr-pneumonia" / "2024-03-01"
    assert resolve_model_dir(Settings(model_store=store, model_version="2024-01-01")).name == "2024-01-01"
    assert ModelRuntime.load(settings).model_dir.name == "2024-03-01"
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(Settings(model_store=store, model_name="other"))
    explicit = Settings(model_store=store, model_dir=tiny_model_dir)
    assert resolve_model_dir(explicit) == tiny_model_dir


def test_provider_selection() -> None:
    assert select_providers("cpu", [CUDA, CPU]) == [CPU]
    assert select_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert select_providers("auto", [CPU]) == [CPU]
    assert select_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(ModelLoadError, match="CXR_EXECUTION_PROVIDER=cuda"):
        select_providers("cuda", ["AzureExecutionProvider", CPU])
    options = {"trt_engine_cache_enable": "True"}
    assert select_providers("tensorrt", [TENSORRT, CUDA, CPU], options) == [(TENSORRT, options), CUDA, CPU]
    with pytest.raises(ModelLoadError, match="CXR_EXECUTION_PROVIDER=tensorrt"):
        select_providers("tensorrt", [CUDA, CPU])


def test_tensorrt_options_cache_engines_and_cover_every_micro_batch(card: ModelCard, tmp_path: Path) -> None:
    options = tensorrt_options(Settings(trt_cache_dir=tmp_path, max_batch_size=8, trt_fp16=True), card)
    assert options["trt_engine_cache_enable"] == "True" and options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_fp16_enable"] == "True"
    assert options["trt_profile_min_shapes"] == "image:1x1x64x64"
    assert options["trt_profile_max_shapes"] == options["trt_profile_opt_shapes"] == "image:8x1x64x64"


@pytest.mark.skipif(TENSORRT in ort.get_available_providers(), reason="this machine has TensorRT")
def test_tensorrt_requested_without_tensorrt_fails_fast(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="CXR_EXECUTION_PROVIDER=tensorrt"):
        ModelRuntime.load(
            Settings(model_dir=tiny_model_dir, execution_provider="tensorrt", trt_cache_dir=tmp_path / "trt")
        )


def test_io_binding_gives_the_same_outputs_as_a_plain_run(tiny_model_dir: Path) -> None:
    bound = _load(tiny_model_dir, io_binding="on")
    plain = _load(tiny_model_dir)
    assert bound.io_binding and not plain.io_binding  # auto: off on the CPU
    films = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    for a, b in zip(bound.infer_batch(films), plain.infer_batch(films), strict=True):
        assert not isinstance(a, Exception) and not isinstance(b, Exception)
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.cams, b.cams)
        assert a.ood_score == b.ood_score


def test_thread_spinning_is_a_setting_that_leaves_the_outputs_alone(tiny_model_dir: Path) -> None:
    for spin, entry in ((True, "1"), (False, "0")):
        options = session_options(Settings(ort_spinning=spin))
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == entry
    spinning, sleeping = _load(tiny_model_dir, ort_spinning=True), _load(tiny_model_dir, ort_spinning=False)
    films = np.random.default_rng(1).random((3, 1, 64, 64), dtype=np.float32)
    for a, b in zip(spinning.infer_batch(films), sleeping.infer_batch(films), strict=True):
        assert not isinstance(a, Exception) and not isinstance(b, Exception)
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.cams, b.cams)


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_fails_fast(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="CXR_EXECUTION_PROVIDER=cuda"):
        ModelRuntime.load(Settings(model_dir=tiny_model_dir, execution_provider="cuda"))


def test_auto_provider_reports_what_is_really_used(tiny_model_dir: Path) -> None:
    runtime = ModelRuntime.load(Settings(model_dir=tiny_model_dir))
    assert runtime.provider in ort.get_available_providers()


def test_decision_uses_the_cards_threshold(model_copy: Path, card: ModelCard) -> None:
    if len(card.class_names) != 2:
        pytest.skip("thresholds apply to binary models")
    negative, positive = card.class_names
    _edit_card(
        model_copy,
        lambda c: c.update(decision_threshold={"positive_class": positive, "value": 0.9, "method": "t"}),
    )
    runtime = _load(model_copy)
    assert runtime.decide(np.array([0.2, 0.8], dtype=np.float32)) == negative  # argmax would say positive
    assert runtime.decide(np.array([0.1, 0.9], dtype=np.float32)) == positive  # >= is positive
    # The positive class need not be the second one.
    _edit_card(
        model_copy,
        lambda c: c.update(decision_threshold={"positive_class": negative, "value": 0.1, "method": "t"}),
    )
    assert _load(model_copy).decide(np.array([0.15, 0.85], dtype=np.float32)) == negative
    _edit_card(model_copy, lambda c: c.update(decision_threshold=None))
    without = _load(model_copy)
    assert without.threshold is None
    assert without.decide(np.array([0.2, 0.8], dtype=np.float32)) == positive


def test_padded_batches_give_each_film_its_own_result(tiny_model_dir: Path) -> None:
    padded = _load(tiny_model_dir, pad_batches="on", max_batch_size=8)
    plain = _load(tiny_model_dir)
    assert padded.pad_to == 8 and plain.pad_to is None  # auto: off on the CPU
    films = np.random.default_rng(1).random((3, 1, 64, 64), dtype=np.float32)
    results = padded.infer_batch(films)
    assert len(results) == 3
    for a, b in zip(results, plain.infer_batch(films), strict=True):
        assert not isinstance(a, Exception) and not isinstance(b, Exception)
        assert a.batch_size == 3
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        np.testing.assert_allclose(a.cams, b.cams, rtol=1e-4, atol=1e-5)
