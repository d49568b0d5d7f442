"""Near-duplicate films by a 256-bit difference hash (dHash), for sources without patient ids and for
the leakage check across sources and splits.

The hash is taken from the film's model input (the preprocessing contract), so the same film stored
as PNG, JPEG or a re-compressed copy at another size hashes alike: the plane is shrunk to 17 x 16 and
each bit says whether a pixel is brighter than its right neighbour. Two films within
``max_distance`` differing bits are treated as copies of one film (resized, re-encoded, slightly
windowed); a follow-up film of the same patient is generally not, which is why sources with patient
ids are grouped by patient as well.

Why 256 bits: chest films all share one layout, so the classic 64-bit (9 x 8) hash puts unrelated
films within 2-4 bits of each other (measured on the adult set). At 16 x 16, JPEG quality 30,
2x down-up and gamma 1.4 copies stay within 11 bits of their original, while 99.99% of pairs of
distinct films differ in more than 15.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.contract.preprocess import resize_plane

HASH_WIDTH, HASH_HEIGHT = 17, 16
HASH_BITS = (HASH_WIDTH - 1) * HASH_HEIGHT
_WORDS = HASH_BITS // 64
# Compare at most this many hashes at once (a block of rows x all columns x 4 uint64 words).
_BLOCK = 128


def difference_hash(plane: npt.NDArray[np.floating]) -> int:
    """256-bit dHash of a ``[H, W]`` (or ``[1, H, W]``) plane, as a Python int."""
    flat = np.asarray(plane, dtype=np.float32).reshape(plane.shape[-2], plane.shape[-1])
    small = resize_plane(flat, HASH_HEIGHT, HASH_WIDTH)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _words(hashes: Sequence[int]) -> npt.NDArray[np.uint64]:
    raw = b"".join(h.to_bytes(HASH_BITS // 8, "big") for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), _WORDS)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def close_pairs(
    hashes: Sequence[int], max_distance: int, others: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Index pairs (i, j) whose hashes differ in at most ``max_distance`` bits: within ``hashes``
    (i < j) or, with ``others``, between ``hashes[i]`` and ``others[j]``."""
    left = _words(hashes)
    right = left if others is None else _words(others)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(left), _BLOCK):
        block = left[start : start + _BLOCK, None, :] ^ right[None, :, :]
        distance = np.bitwise_count(block).sum(axis=-1)
        rows, cols = np.nonzero(distance <= max_distance)
        for i, j in zip(rows + start, cols, strict=True):
            if others is not None or i < j:
                pairs.append((int(i), int(j)))
    return pairs


class Groups:
    """Union-find over sample indices: patients and near-duplicates become one group."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)
