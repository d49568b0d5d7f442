"""Near-duplicate films by a 64-bit difference hash (dHash), for sources without patient ids and for
the leakage check across sources and splits.

The hash is taken from the film's model input (the preprocessing contract), so the same film stored
as PNG, JPEG or a re-compressed copy at another size hashes alike: the plane is shrunk to 9 x 8 and
each bit says whether a pixel is brighter than its right neighbour. Two films within
``max_distance`` differing bits are treated as copies of one film (resized, re-encoded, slightly
windowed); a follow-up film of the same patient is generally not, which is why sources with patient
ids are grouped by patient as well.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.contract.preprocess import resize_plane

HASH_WIDTH, HASH_HEIGHT = 9, 8
# Compare at most this many hashes at once (a block of rows x all columns of uint64 XORs).
_BLOCK = 512


def difference_hash(plane: npt.NDArray[np.floating]) -> int:
    """64-bit dHash of a ``[H, W]`` (or ``[1, H, W]``) plane."""
    flat = np.asarray(plane, dtype=np.float32).reshape(plane.shape[-2], plane.shape[-1])
    small = resize_plane(flat, HASH_HEIGHT, HASH_WIDTH)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def close_pairs(
    hashes: Sequence[int], max_distance: int, others: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Index pairs (i, j) whose hashes differ in at most ``max_distance`` bits: within ``hashes``
    (i < j) or, with ``others``, between ``hashes[i]`` and ``others[j]``."""
    left = np.asarray(hashes, dtype=np.uint64)
    right = left if others is None else np.asarray(others, dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(left), _BLOCK):
        block = left[start : start + _BLOCK, None] ^ right[None, :]
        distance = np.bitwise_count(block)
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
