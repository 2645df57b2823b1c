"""Keyed pseudo-random permutation of [0, n): a balanced Feistel network with cycle walking.

Any n works: the Feistel network permutes [0, 4^k) for the smallest 4^k >= n, and values that
land outside [0, n) are encrypted again until they fall inside, which keeps it a bijection.
Quality only has to spread probes across hosts and ports, not resist analysis, so the round
function is cheap integer mixing.
"""

from __future__ import annotations

from hashlib import blake2b

_ROUNDS = 4


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

    def _encrypt(self, x: int) -> int:
        half, mask = self._half, self._mask
        left, right = x >> half, x & mask
        for k in self._keys:
            f = ((right * k) >> 17 ^ right * 0x9E3779B1 ^ k) & mask
            left, right = right, left ^ f
        return (left << half) | right

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        x = self._encrypt(i)
        while x >= self.n:
            x = self._encrypt(x)
        return x
