"""Real ONNX files with a fault built in, made with the ``onnx`` package from the tiny model.

Each edit rewrites ``model.onnx`` in a model directory and, where the test wants the file to pass the
checksum and fail a later check, updates the card's sha256 to match, as a careless export would.
"""

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.contract.model_card import CARD_FILENAME, INPUT_NAME, ONNX_FILENAME, PROBABILITIES_OUTPUT

if TYPE_CHECKING:
    import onnx

EXTERNAL_DATA_FILENAME = "model.onnx.data"
# Films whose model input averages above this make the guarded graph fail at run time.
GUARD_MEAN_ABOVE = 0.9


def edit_card(model_dir: Path, **fields: object) -> None:
    path = model_dir / CARD_FILENAME
    card = json.loads(path.read_text())
    card.update(fields)
    path.write_text(json.dumps(card))


def rehash(model_dir: Path) -> None:
    """Make the card's sha256 agree with whatever ``model.onnx`` now holds."""
    edit_card(model_dir, onnx_sha256=hashlib.sha256((model_dir / ONNX_FILENAME).read_bytes()).hexdigest())


def add_version(store: Path, source: Path, version: str, name: str = "cxr-pneumonia") -> Path:
    """``store/name/version``: a copy of ``source`` whose card says ``version``."""
    target = Path(shutil.copytree(source, store / name / version))
    edit_card(target, version=version)
    return target


def corrupt(model_dir: Path) -> None:
    """Flip one byte of the weights, leaving the card alone: what a bad disk or a partial copy does."""
    path = model_dir / ONNX_FILENAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def move_weights_to_external_data(model_dir: Path) -> None:
    """Save every initializer into a side file referenced from the graph, then re-hash the card."""
    import onnx

    path = model_dir / ONNX_FILENAME
    model = onnx.load(str(path))
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=EXTERNAL_DATA_FILENAME,
        size_threshold=0,
    )
    rehash(model_dir)


def drop_output(model_dir: Path, output: str) -> None:
    """Remove one graph output (the card still promises it), then re-hash the card."""
    import onnx

    path = model_dir / ONNX_FILENAME
    model = onnx.load(str(path))
    kept = [o for o in model.graph.output if o.name != output]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    path.write_bytes(model.SerializeToString())
    rehash(model_dir)


def swap_class_probabilities(model_dir: Path) -> None:
    """Report each film's probabilities in the reverse class order, then re-hash the card.

    A real, loadable, well-formed model that is honestly worse: a binary model's AUC becomes
    1 - AUC. Its operating point t becomes 1 - t, so it calls every film the opposite of the
    trained model: still both classes, not a collapsed model.
    """
    import onnx
    from onnx import helper, numpy_helper

    path = model_dir / ONNX_FILENAME
    model = onnx.load(str(path))
    graph = model.graph
    as_trained = f"{PROBABILITIES_OUTPUT}_as_trained"
    for node in graph.node:
        for names in (node.input, node.output):
            for index, name in enumerate(names):
                if name == PROBABILITIES_OUTPUT:
                    names[index] = as_trained
    classes = next(o for o in graph.output if o.name == PROBABILITIES_OUTPUT).type.tensor_type.shape.dim[1]
    order = np.arange(classes.dim_value, dtype=np.int64)[::-1].copy()
    graph.initializer.append(numpy_helper.from_array(order, "swapped_class_order"))
    graph.node.append(
        helper.make_node("Gather", [as_trained, "swapped_class_order"], [PROBABILITIES_OUTPUT], axis=1)
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    card = json.loads((model_dir / CARD_FILENAME).read_text())
    if card["decision_threshold"] is not None:
        card["decision_threshold"]["value"] = 1.0 - card["decision_threshold"]["value"]
        (model_dir / CARD_FILENAME).write_text(json.dumps(card))
    rehash(model_dir)


def add_failure_guard(model_dir: Path) -> None:
    """Make the graph raise inside ONNX Runtime for bright films, and only for them.

    In front of the real network, the input goes through a Reshape whose target shape is the input's
    own shape plus one column when any film's mean exceeds ``GUARD_MEAN_ABOVE``. Ordinary films (and
    the blank warm-up film) pass unchanged; a nearly white film makes Reshape fail at run time, a real
    ORT error raised from ``session.run`` - for the whole batch it is in, as a real fault would.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = model_dir / ONNX_FILENAME
    model = onnx.load(str(path))
    graph = model.graph
    guarded = f"{INPUT_NAME}_guarded"
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == INPUT_NAME:
                node.input[index] = guarded
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(GUARD_MEAN_ABOVE, dtype=np.float32), "guard_threshold"),
            numpy_helper.from_array(np.array([0, 0, 0, 1], dtype=np.int64), "guard_extra_column"),
        ]
    )
    guard = [
        *_per_film_mean(model, "guard_film_means"),
        helper.make_node("ReduceMax", ["guard_film_means"], ["guard_mean"], keepdims=0),
        helper.make_node("Greater", ["guard_mean", "guard_threshold"], ["guard_bright"]),
        helper.make_node("Cast", ["guard_bright"], ["guard_flag"], to=TensorProto.INT64),
        helper.make_node("Mul", ["guard_flag", "guard_extra_column"], ["guard_delta"]),
        helper.make_node("Shape", [INPUT_NAME], ["guard_shape"]),
        helper.make_node("Add", ["guard_shape", "guard_delta"], ["guard_target"]),
        helper.make_node("Reshape", [INPUT_NAME, "guard_target"], [guarded]),
    ]
    nodes = guard + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    rehash(model_dir)


def _per_film_mean(model: "onnx.ModelProto", output: str) -> list["onnx.NodeProto"]:
    """ReduceMean of the input over C, H, W: ``axes`` is an attribute before opset 18, an input after."""
    from onnx import helper, numpy_helper

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:
        return [helper.make_node("ReduceMean", [INPUT_NAME], [output], axes=[1, 2, 3], keepdims=0)]
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "guard_axes"))
    return [helper.make_node("ReduceMean", [INPUT_NAME, "guard_axes"], [output], keepdims=0)]
