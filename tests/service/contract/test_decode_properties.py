"""Property-based tests of the decoding contract's entry point, ``load_model_input``.

Whatever the bytes - random, random behind a valid signature, or a valid PNG, JPEG or DICOM file
with bytes flipped, cut, overwritten, inserted or duplicated - the result is a valid model input or
an ``InputError``; never another exception (see ``tests.fuzz.target.check_decode``). The atheris
harness in ``tests/fuzz`` checks the same property with coverage guidance.
"""

import os
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.contract import InputError, load_model_input
from service.contract.sniff import DICOM_MAGIC, DICOM_MAGIC_OFFSET, JPEG_MAGIC, PNG_MAGIC
from tests.fuzz.target import LIMITS, SIZE, check_decode, seed_files

# Each example decodes a small file in about a millisecond; 300 per test keeps the module near 10 s.
EXAMPLES = settings(
    max_examples=int(os.environ.get("CXR_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def _seeds() -> dict[str, bytes]:
    return seed_files()


@EXAMPLES
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@EXAMPLES
@given(
    st.sampled_from([PNG_MAGIC, JPEG_MAGIC, bytes(DICOM_MAGIC_OFFSET) + DICOM_MAGIC]),
    st.binary(max_size=4096),
)
def test_random_bytes_behind_a_valid_signature(magic: bytes, tail: bytes) -> None:
    check_decode(magic + tail)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_seeds()[draw(st.sampled_from(sorted(_seeds())))])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "cut", "delete", "duplicate"]))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "cut":
            del data[at:]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
    return bytes(data)


@EXAMPLES
@given(_mutated())
def test_mutated_valid_files(data: bytes) -> None:
    check_decode(data)


@pytest.mark.parametrize("name", sorted(seed_files()))
def test_every_seed_reaches_its_decoder(name: str) -> None:
    """Control: the seeds are valid, so the mutations above start from files that get past sniffing
    and header checks into each decoder (the APNG seed and the DICOM nested 40 deep are refused by
    design, after their headers)."""
    refused_by_design = {"apng-2-frames": "multi_frame", "dicom-nested-40": "dicom_too_deep"}
    if name in refused_by_design:
        with pytest.raises(InputError) as refused:
            load_model_input(_seeds()[name], SIZE, SIZE, LIMITS)
        assert refused.value.code == refused_by_design[name]
        return
    tensor, _ = load_model_input(_seeds()[name], SIZE, SIZE, LIMITS)
    assert float(tensor.max()) == 1.0
