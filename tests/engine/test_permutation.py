import pytest

from netscand.engine.permutation import Permutation


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 13, 251, 4093, 65521, 2, 4, 64, 1024, 65536])
def test_every_index_exactly_once(n):
    p = Permutation(n, b"key")
    assert sorted(p(i) for i in range(n)) == list(range(n))


def test_keyed_and_not_identity():
    n = 4096
    a = [Permutation(n, b"one")(i) for i in range(n)]
    b = [Permutation(n, b"two")(i) for i in range(n)]
    assert a != b
    assert sum(1 for i, v in enumerate(a) if i == v) < n // 100


def test_out_of_range_and_empty():
    with pytest.raises(IndexError):
        Permutation(10, b"k")(10)
    with pytest.raises(ValueError):
        Permutation(0, b"k")
