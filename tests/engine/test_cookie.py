from netscand.engine.cookie import SLOT_MASK, Cookies, cookie, slot_of

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


def test_per_plan_cookies_equal_the_keyed_function():
    hosts = (0xC6120010, 0xC6120011, 0xC6130005)
    cookies = Cookies(KEY, 3, hosts)
    for i, ip in enumerate(hosts):
        for port, sport in ((0, 0), (22, 61440), (65535, 65535)):
            assert cookies(i, port, sport) == cookie(KEY, 3, ip, port, sport)


def test_one_hosts_cookies_say_nothing_of_anothers():
    # Each host's secret is its own keyed hash: the same ports give other cookies.
    cookies = Cookies(KEY, 0, (0xC6120010, 0xC6120011))
    a = [cookies(0, p, 61440) for p in range(2000)]
    b = [cookies(1, p, 61440) for p in range(2000)]
    assert len(set(a)) > 1990 and len(set(b)) > 1990
    assert sum(x == y for x, y in zip(a, b)) < 3
