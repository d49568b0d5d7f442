"""Find ONNX tensors whose data lives outside ``model.onnx`` (``data_location = EXTERNAL``).

Such a model is refused: the card's sha256 covers ``model.onnx`` only, so external weights would be
served unverified, and ONNX Runtime resolves their paths against the process's working directory
when a model is loaded from bytes, as ours is, not against the model folder.

This reads the protobuf wire format directly rather than importing ``onnx``: the serving install
has no ``onnx`` package (it is a training dependency), and ONNX Runtime does not expose a graph's
initializers. Only the messages that can hold a tensor are walked - the main graph, subgraphs in
node attributes (If/Loop/Scan bodies) and model-local functions - with field numbers from
``onnx.proto``. The walk is fail-closed: bytes that do not parse are refused, never skipped.
"""

from collections.abc import Iterator

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# Subgraphs nest (an If inside a Loop body...); real models stay shallow, a crafted file need not.
_MAX_DEPTH = 32

# Field numbers from onnx.proto.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_FUNCTION_NODE = 7
_NODE_ATTRIBUTE = 5
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_GRAPHS, _ATTR_TENSORS = 5, 6, 11, 10
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14


class MalformedModelError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def external_data_tensors(model: bytes) -> list[str]:
    """Names of the tensors that reference external data (``<unnamed>`` for those without a name)."""
    found: list[str] = []
    view = memoryview(model)
    for number, value in _fields(view):
        if number == _MODEL_GRAPH and isinstance(value, memoryview):
            _scan_graph(value, found, 0)
        elif number == _MODEL_FUNCTIONS and isinstance(value, memoryview):
            _scan_nodes(value, _FUNCTION_NODE, found, 0)
    return found


def _scan_graph(graph: memoryview, found: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedModelError(f"subgraphs nested deeper than {_MAX_DEPTH} levels")
    for number, value in _fields(graph):
        if not isinstance(value, memoryview):
            continue
        if number == _GRAPH_INITIALIZER:
            _scan_tensor(value, found)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _scan_sparse_tensor(value, found)
        elif number == _GRAPH_NODE:
            _scan_node(value, found, depth)


def _scan_nodes(container: memoryview, node_field: int, found: list[str], depth: int) -> None:
    for number, value in _fields(container):
        if number == node_field and isinstance(value, memoryview):
            _scan_node(value, found, depth)


def _scan_node(node: memoryview, found: list[str], depth: int) -> None:
    for number, attribute in _fields(node):
        if number != _NODE_ATTRIBUTE or not isinstance(attribute, memoryview):
            continue
        for field, value in _fields(attribute):
            if not isinstance(value, memoryview):
                continue
            if field in (_ATTR_TENSOR, _ATTR_TENSORS):
                _scan_tensor(value, found)
            elif field in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                _scan_sparse_tensor(value, found)
            elif field in (_ATTR_GRAPH, _ATTR_GRAPHS):
                _scan_graph(value, found, depth + 1)


def _scan_sparse_tensor(sparse: memoryview, found: list[str]) -> None:
    for number, value in _fields(sparse):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES) and isinstance(value, memoryview):
            _scan_tensor(value, found)


def _scan_tensor(tensor: memoryview, found: list[str]) -> None:
    name, external = "<unnamed>", False
    for number, value in _fields(tensor):
        if number == _TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", errors="replace")
        elif number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION and value == _EXTERNAL):
            external = True
    if external:
        found.append(name)


def _fields(message: memoryview) -> Iterator[tuple[int, memoryview | int | None]]:
    """``(field number, value)``: the payload for length-delimited fields, the integer for varints."""
    position, end = 0, len(message)
    while position < end:
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise MalformedModelError("field number 0")
        if wire_type == _VARINT:
            value, position = _varint(message, position)
            yield number, value
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _varint(message, position)
            if position + length > end:
                raise MalformedModelError("a length-delimited field runs past the end of its message")
            yield number, message[position : position + length]
            position += length
        elif wire_type in (_FIXED64, _FIXED32):
            position += 8 if wire_type == _FIXED64 else 4
            if position > end:
                raise MalformedModelError("a fixed-width field runs past the end of its message")
            yield number, None
        else:  # groups (3, 4) are not used by onnx.proto; 6 and 7 do not exist
            raise MalformedModelError(f"unsupported wire type {wire_type}")


def _varint(message: memoryview, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(message):
            raise MalformedModelError("truncated varint")
        byte = message[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise MalformedModelError("varint longer than 10 bytes")
