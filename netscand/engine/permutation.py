"""Keyed pseudo-random permutation of [0, n): a balanced Feistel network with cycle walking.

Any n works: the Feistel network permutes [0, 4^k) for the smallest 4^k >= n, and values that
land outside [0, n) are encrypted again until they fall inside, which keeps it a bijection.
Quality only has to spread probes across hosts and ports, not resist analysis, so the round
function is cheap integer mixing.
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np
import numpy.typing as npt

_ROUNDS = 4
_GOLDEN = 0x9E3779B1
_SHIFT = 17
# many() runs the rounds in uint64, whose products wrap mod 2^64: exact while a value fits in 64
# bits (4^half <= 2^64) and the round's bits 17 .. 17 + half of right * k lie below bit 64; and
# it returns int64 (what index arithmetic with other int64 arrays keeps integral), so n <= 2^63.
# A shard holds at most shm.SHARD_MAX probes, far below.
MANY_MAX = 1 << 63
_USHIFT, _UGOLDEN = np.uint64(_SHIFT), np.uint64(_GOLDEN)


class Permutation:
    def __init__(self, n: int, key: bytes) -> None:
        if n < 1:
            raise ValueError("permutation size must be at least 1")
        self.n = n
        half = max(1, ((n - 1).bit_length() + 1) // 2)
        self._half = half
        self._mask = (1 << half) - 1
        seed = blake2b(key, digest_size=8 * _ROUNDS, person=b"netscand-perm").digest()
        self._keys = [int.from_bytes(seed[8 * i : 8 * i + 8], "big") | 1 for i in range(_ROUNDS)]
        self._ukeys = [np.uint64(k) for k in self._keys]

    def _encrypt(self, x: int) -> int:
        half, mask = self._half, self._mask
        left, right = x >> half, x & mask
        for k in self._keys:
            f = ((right * k) >> _SHIFT ^ right * _GOLDEN ^ k) & mask
            left, right = right, left ^ f
        return (left << half) | right

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        x = self._encrypt(i)
        while x >= self.n:
            x = self._encrypt(x)
        return x

    def _encrypt_many(self, x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """_encrypt over an array: the same rounds, in uint64 (MANY_MAX says why that is exact)."""
        half, mask = np.uint64(self._half), np.uint64(self._mask)
        left, right = x >> half, x & mask
        for k in self._ukeys:
            f = ((right * k) >> _USHIFT ^ right * _UGOLDEN ^ k) & mask
            left, right = right, left ^ f
        return (left << half) | right

    def many(self, first: int, count: int) -> npt.NDArray[np.int64]:
        """[self(i) for i in range(first, first + count)], as one array: a batch of probes'
        offsets for the price of a few dozen numpy calls."""
        if self.n > MANY_MAX:
            raise ValueError(f"many() is for n <= 2**63, not {self.n}")
        if count < 0 or first < 0 or first + count > self.n:
            raise IndexError((first, count))
        x = self._encrypt_many(np.arange(first, first + count, dtype=np.uint64))
        n = np.uint64(self.n - 1)
        out = np.flatnonzero(x > n)
        while out.size:  # cycle walking: only the values still outside [0, n) go round again
            x[out] = walked = self._encrypt_many(x[out])
            out = out[walked > n]
        return x.astype(np.int64)
