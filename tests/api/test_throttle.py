"""Failed authentication on the TLS listener is throttled per client address: 10 at once, then
one every 6 s; past that 429 with Retry-After. A valid token and the Unix socket never are."""

from __future__ import annotations

import pytest

from netscand.api.problems import Problem
from netscand.api.server import client_key
from netscand.api.throttle import BURST, MAX_PEERS, REFILL_S, AuthThrottle
from tests.api.conftest import Api, assert_problem, scrape

UNAUTHENTICATED = "urn:netscand:problem:unauthenticated"
THROTTLED = "urn:netscand:problem:too-many-auth-failures"


def test_the_eleventh_failure_in_a_row_is_a_429(api: Api) -> None:
    wrong, anonymous = api.tcp("nsd_wrong"), api.tcp()
    for i in range(BURST):
        # Missing and wrong tokens alike spend the address's allowance.
        assert_problem((wrong if i % 2 else anonymous).get("/api/v1/scans"), 401, UNAUTHENTICATED)
    r = wrong.get("/api/v1/scans")
    body = assert_problem(r, 429, THROTTLED)
    assert 1 <= int(r.headers["retry-after"]) <= REFILL_S
    assert "www-authenticate" not in r.headers
    assert f"retry in {r.headers['retry-after']} s" in body["detail"]
    assert_problem(anonymous.post("/api/v1/scans/start", json={}), 429, THROTTLED)


def test_a_valid_token_and_the_unix_socket_are_never_throttled(api: Api) -> None:
    wrong = api.tcp("nsd_wrong")
    for _ in range(BURST + 5):
        wrong.get("/api/v1/scans")
    assert wrong.get("/api/v1/scans").status_code == 429
    assert api.tcp(api.token("read")).get("/api/v1/scans").status_code == 200
    assert api.unix().get("/api/v1/scans").status_code == 200
    assert wrong.get("/api/v1/scans").status_code == 429  # the valid token refilled nothing


def test_429s_are_counted_and_logged_like_any_answer(api: Api) -> None:
    wrong = api.tcp("nsd_wrong")
    for _ in range(BURST + 2):
        wrong.get("/api/v1/scans")
    samples = scrape(api.unix())
    assert samples[("netscand_api_requests_total", (("code", "401"), ("listener", "tcp")))] == BURST
    assert samples[("netscand_api_requests_total", (("code", "429"), ("listener", "tcp")))] == 2


# The bucket itself, on a clock the test chooses.

def test_the_bucket_refills_one_failure_every_refill_period() -> None:
    throttle = AuthThrottle()
    for _ in range(BURST):
        throttle.failed("192.0.2.1", 0.0)
    with pytest.raises(Problem) as refused:
        throttle.failed("192.0.2.1", 1.0)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "5"
    throttle.failed("192.0.2.2", 1.0)  # another address has its own allowance
    throttle.failed("192.0.2.1", REFILL_S)  # one more, one period after the burst
    with pytest.raises(Problem):
        throttle.failed("192.0.2.1", REFILL_S)
    for _ in range(BURST):  # a quiet minute restores the whole burst
        throttle.failed("192.0.2.1", REFILL_S + BURST * REFILL_S)


def test_the_memory_is_bounded() -> None:
    throttle = AuthThrottle()
    for i in range(3 * MAX_PEERS):
        throttle.failed(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", i * 1e-6)
    assert len(throttle) == MAX_PEERS
    # Addresses that have stopped failing are forgotten once their buckets are full again.
    throttle.failed("192.0.2.1", 3600.0)
    assert len(throttle) == 1


def test_an_ipv6_client_is_one_address_per_64_and_a_mapped_ipv4_one_is_its_ipv4() -> None:
    throttle = AuthThrottle()
    for i in range(BURST):
        throttle.failed(f"2001:db8:1:2::{i + 1:x}", 0.0)  # one host rotating through its /64
    with pytest.raises(Problem):
        throttle.failed("2001:db8:1:2:ffff::1", 0.0)
    throttle.failed("2001:db8:1:3::1", 0.0)  # the next /64 is another client
    for _ in range(BURST):
        throttle.failed("::ffff:192.0.2.7", 0.0)
    with pytest.raises(Problem):
        throttle.failed("192.0.2.7", 0.0)


def test_client_keys() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("not an address") == "not an address"  # whatever a server reports, a key
