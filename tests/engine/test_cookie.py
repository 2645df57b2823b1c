from netscand.engine.cookie import SLOT_MASK, cookie, slot_of

KEY = bytes(range(16))


def test_cookie_round_trip_carries_slot_and_verifies():
    for slot in range(SLOT_MASK + 1):
        c = cookie(KEY, slot, 0xC6120010, 443, 61500)
        assert slot_of(c) == slot
        assert cookie(KEY, slot, 0xC6120010, 443, 61500) == c


def test_cookie_changes_with_every_field_and_key():
    base = cookie(KEY, 1, 0xC6120010, 443, 61500)
    assert cookie(KEY, 1, 0xC6120011, 443, 61500) != base
    assert cookie(KEY, 1, 0xC6120010, 444, 61500) != base
    assert cookie(KEY, 1, 0xC6120010, 443, 61501) != base
    assert cookie(bytes(16), 1, 0xC6120010, 443, 61500) != base


def test_cookie_fits_a_sequence_number():
    values = {cookie(KEY, 0, 0xC6120000 + i, 80, 61440) for i in range(2000)}
    assert all(0 <= v <= 0xFFFFFFFF for v in values)
    assert len(values) > 1990  # 30 bits of hash: collisions are rare
