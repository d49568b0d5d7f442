"""The external-data scan finds every tensor ``onnx`` would load from a side file, wherever it hides."""

from pathlib import Path

import numpy as np
import pytest

from service.contract.model_card import ONNX_FILENAME
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from service.store.errors import ModelLoadError
from service.store.external_data import MalformedModelError, external_data_tensors
from tests.service.model_edits import EXTERNAL_DATA_FILENAME, move_weights_to_external_data

onnx = pytest.importorskip("onnx")
from onnx import GraphProto, TensorProto, helper, numpy_helper  # noqa: E402 - after the importorskip


def _externalise(tensor: TensorProto) -> TensorProto:
    """Mark a tensor as stored in a side file, as ``onnx.save_model(save_as_external_data=True)`` does."""
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    return tensor


def _weights(name: str) -> TensorProto:
    return numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), name)


def _graph(name: str, initializers: list[TensorProto]) -> GraphProto:
    return helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        initializers,
    )


def test_a_model_without_external_data_has_none(tiny_model_dir: Path) -> None:
    assert external_data_tensors((tiny_model_dir / ONNX_FILENAME).read_bytes()) == []


def test_initializers_saved_as_external_data_are_found(model_copy: Path) -> None:
    move_weights_to_external_data(model_copy)
    model = onnx.load(str(model_copy / ONNX_FILENAME), load_external_data=False)
    expected = [t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert expected  # the edit really moved weights out
    assert external_data_tensors((model_copy / ONNX_FILENAME).read_bytes()) == expected


def test_external_tensors_in_subgraphs_attributes_sparse_and_functions_are_found() -> None:
    then_branch = _graph("then", [_externalise(_weights("in_if_branch"))])
    else_branch = _graph("else", [])
    sparse = helper.make_sparse_tensor(
        _externalise(numpy_helper.from_array(np.ones(1, dtype=np.float32), "sparse_values")),
        numpy_helper.from_array(np.zeros(1, dtype=np.int64), "sparse_indices"),
        [2],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Constant", [], ["c"], value=_externalise(_weights("in_constant"))),
    ]
    graph = helper.make_graph(
        nodes,
        "main",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [_weights("inline"), _externalise(_weights("top_level"))],
        sparse_initializer=[sparse],
    )
    function = helper.make_function(
        "local",
        "F",
        ["a"],
        ["b"],
        [helper.make_node("Constant", [], ["b"], value=_externalise(_weights("in_function")))],
        [helper.make_opsetid("", 18)],
    )
    model = helper.make_model(graph, functions=[function])
    found = external_data_tensors(model.SerializeToString())
    assert sorted(found) == ["in_constant", "in_function", "in_if_branch", "sparse_values", "top_level"]


@pytest.mark.parametrize(
    "data",
    [b"\x3a\xff\xff\xff\xff\x0f", b"\x3a\x05ab", b"\x3a", b"\x0b\x00", b"\x3a\x02\x2a\xff"],
    ids=["length-past-end", "short-graph", "truncated-varint", "group-wire-type", "nested-truncated"],
)
def test_bytes_that_do_not_parse_are_refused_not_skipped(data: bytes) -> None:
    with pytest.raises(MalformedModelError):
        external_data_tensors(data)


def test_the_runtime_refuses_external_data_before_onnx_runtime_reads_it(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    move_weights_to_external_data(model_copy)
    # ORT resolves external data of a model loaded from bytes against the working directory: from
    # here it would find the side file and load unverified weights. The scan must refuse first.
    monkeypatch.chdir(model_copy)
    assert Path(EXTERNAL_DATA_FILENAME).is_file()
    with pytest.raises(ModelLoadError, match=r"keep their data outside the file .*not covered by .*sha256"):
        ModelRuntime.load(Settings(model_dir=model_copy, execution_provider="cpu"))
