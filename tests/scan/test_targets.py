import asyncio
import itertools
import threading
import time
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.scan.targets import (
    MAX_HOSTNAMES, MAX_TARGET_TOKENS, TargetError, Targets, exclude, parse_targets, parse_targets_async,
)


def ip(text: str) -> int:
    return int(IPv4Address(text))


def span(first: str, last: str) -> tuple[int, int]:
    return ip(first), ip(last)


def fake_dns(host: str) -> list[str]:
    # A stand-in resolver: tests must never send queries for anything but localhost.
    return {"web.test": ["198.18.1.1", "198.18.1.2", "198.18.1.1"], "v6only.test": []}[host]


def unresolvable(host: str) -> list[str]:
    raise OSError(f"no such host {host}")


# --- accepted forms ---------------------------------------------------------


def test_single_address() -> None:
    t = parse_targets("198.18.0.7")
    assert t.ranges == (span("198.18.0.7", "198.18.0.7"),)
    assert t.count == 1


def test_cidr() -> None:
    assert parse_targets("198.18.0.0/24").ranges == (span("198.18.0.0", "198.18.0.255"),)


def test_cidr_with_host_bits_means_whole_block() -> None:
    assert parse_targets("198.18.0.5/24") == parse_targets("198.18.0.0/24")


def test_cidr_extremes() -> None:
    assert parse_targets("198.18.0.5/32").ranges == (span("198.18.0.5", "198.18.0.5"),)
    assert parse_targets("1.2.3.4/0").count == 2**32


def test_full_range() -> None:
    t = parse_targets("198.18.0.250-198.18.1.5")
    assert t.ranges == (span("198.18.0.250", "198.18.1.5"),)
    assert t.count == 12


def test_short_range_replaces_last_octet() -> None:
    assert parse_targets("198.18.0.1-20").ranges == (span("198.18.0.1", "198.18.0.20"),)


def test_single_address_range() -> None:
    assert parse_targets("198.18.0.9-9").count == 1


def test_hostname_localhost() -> None:
    t = parse_targets("localhost")
    assert "127.0.0.1" in t


def test_hostname_all_a_records_deduplicated() -> None:
    t = parse_targets("web.test", resolve=fake_dns)
    assert [str(a) for a in t] == ["198.18.1.1", "198.18.1.2"]


def test_hostname_resolved_once() -> None:
    calls: list[str] = []

    def counting(host: str) -> list[str]:
        calls.append(host)
        return ["198.18.1.1"]

    parse_targets("web.test, web.test 198.18.0.1", resolve=counting)
    assert calls == ["web.test"]


def test_hostnames_with_dashes_and_digits_are_not_ranges() -> None:
    names: list[str] = []

    def recording(host: str) -> list[str]:
        names.append(host)
        return ["198.18.1.1"]

    parse_targets("my-host 1-2-3.example.test", resolve=recording)
    assert names == ["my-host", "1-2-3.example.test"]


def test_comma_and_whitespace_separated_list() -> None:
    t = parse_targets(" 198.18.0.1,198.18.0.3\n198.18.0.5\t, 198.18.0.7 ")
    assert [str(a) for a in t] == ["198.18.0.1", "198.18.0.3", "198.18.0.5", "198.18.0.7"]


def test_python_list_of_mixed_forms() -> None:
    t = parse_targets(["198.18.0.0/30", "198.18.0.10-11", "web.test", "198.18.2.1, 198.18.2.2"], resolve=fake_dns)
    assert t.ranges == (
        span("198.18.0.0", "198.18.0.3"),
        span("198.18.0.10", "198.18.0.11"),
        span("198.18.1.1", "198.18.1.2"),
        span("198.18.2.1", "198.18.2.2"),
    )


def test_duplicates_overlaps_and_adjacent_ranges_merge() -> None:
    t = parse_targets("198.18.0.5 198.18.0.5 198.18.0.0/29 198.18.0.6-198.18.0.12 198.18.0.13 198.18.0.20")
    assert t.ranges == (span("198.18.0.0", "198.18.0.13"), span("198.18.0.20", "198.18.0.20"))
    assert t.count == 15


def test_constructor_normalises() -> None:
    t = Targets(((10, 20), (1, 5), (6, 8), (15, 30)))
    assert t.ranges == ((1, 8), (10, 30))
    assert t == Targets(((1, 8), (10, 30)))


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty target specification"),
        (" , \n", "empty target specification"),
        ([], "empty target specification"),
        ("198.18.0", "malformed IPv4 address '198.18.0'"),
        ("198.18.0.256", "malformed IPv4 address '198.18.0.256'"),
        ("198.018.0.1", "malformed IPv4 address '198.018.0.1'"),
        ("1234", "malformed IPv4 address '1234'"),
        ("198.18.0.1-198.18.1", "malformed IPv4 address '198.18.1' in '198.18.0.1-198.18.1'"),
        ("198.18.0-5", "malformed IPv4 address '198.18.0' in '198.18.0-5'"),
        ("host/24", "malformed IPv4 address 'host' in 'host/24'"),
        ("198.18.0.0/33", "bad prefix length in '198.18.0.0/33'"),
        ("198.18.0.0/", "bad prefix length in '198.18.0.0/'"),
        ("198.18.0.0/-1", "bad prefix length in '198.18.0.0/-1'"),
        ("198.18.0.0/255.255.255.0", "bad prefix length"),
        ("198.18.0.0/24/8", "bad prefix length"),
        ("198.18.0.9-198.18.0.1", "reversed range '198.18.0.9-198.18.0.1'"),
        ("198.18.0.9-1", "reversed range '198.18.0.9-1'"),
        ("198.18.0.1-256", "malformed range end in '198.18.0.1-256'"),
        ("198.18.0.1-", "malformed target '198.18.0.1-'"),
        ("bad$name", "malformed target 'bad$name'"),
        ("-host", "malformed target '-host'"),
        ("::1", "IPv6 targets are not supported yet: '::1'"),
        ("2001:db8::/32", "IPv6 targets are not supported yet: '2001:db8::/32'"),
        ("2001:db8::1-2001:db8::9", "IPv6 targets are not supported yet"),
        (["198.18.0.1", "fe80::1"], "IPv6 targets are not supported yet: 'fe80::1'"),
        ("host:80", "malformed target 'host:80'"),
        ([198], "target must be a string"),
    ],
)
def test_bad_specs(spec: object, message: str) -> None:
    with pytest.raises(TargetError, match="^[^\n]+$") as info:
        parse_targets(spec, resolve=unresolvable)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_unresolvable_hostname_is_named() -> None:
    with pytest.raises(TargetError, match="hostname 'nowhere.test' does not resolve"):
        parse_targets("198.18.0.1 nowhere.test", resolve=unresolvable)


def test_hostname_without_ipv4_address() -> None:
    with pytest.raises(TargetError, match="'v6only.test' does not resolve to an IPv4 address"):
        parse_targets("v6only.test", resolve=fake_dns)


def test_target_error_is_value_error() -> None:
    assert issubclass(TargetError, ValueError)


def test_invalid_ranges_rejected_by_constructor() -> None:
    for bad in [((5, 1),), ((-1, 3),), ((0, 2**32),)]:
        with pytest.raises(ValueError):
            Targets(bad)


# --- set behaviour ----------------------------------------------------------

MULTI = "198.18.0.254-198.18.1.1 10.0.0.0/30 192.0.2.9"
MULTI_ORDER = [
    "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3",
    "192.0.2.9",
    "198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1",
]  # fmt: skip


def test_iteration_order_and_count() -> None:
    t = parse_targets(MULTI)
    assert list(t) == [IPv4Address(a) for a in MULTI_ORDER]
    assert t.count == len(MULTI_ORDER)


def test_contains() -> None:
    t = parse_targets(MULTI)
    assert "10.0.0.3" in t
    assert ip("198.18.1.0") in t
    assert IPv4Address("192.0.2.9") in t
    assert "10.0.0.4" not in t
    assert ip("192.0.2.8") not in t
    assert "not an address" not in t
    assert -1 not in t
    assert 2**32 not in t


def test_index_and_at_round_trip() -> None:
    t = parse_targets(MULTI)
    for position, text in enumerate(MULTI_ORDER):
        assert t.index(ip(text)) == position
        assert t.at(position) == ip(text)
    assert all(t.index(t.at(i)) == i for i in range(t.count))


def test_index_and_at_on_huge_targets() -> None:
    t = parse_targets("10.0.0.0/8 172.16.0.0/12 192.168.0.0/16")
    last = t.count - 1
    assert t.count == 2**24 + 2**20 + 2**16
    assert t.at(2**24) == ip("172.16.0.0")
    assert t.index(ip("192.168.255.255")) == last
    assert t.index(t.at(last)) == last


def test_index_of_absent_address() -> None:
    t = parse_targets(MULTI)
    for absent in [ip("10.0.0.4"), ip("9.255.255.255"), ip("255.255.255.255"), 0, -1]:
        with pytest.raises(KeyError):
            t.index(absent)


def test_at_out_of_range() -> None:
    t = parse_targets(MULTI)
    for bad in [-1, t.count]:
        with pytest.raises(IndexError):
            t.at(bad)


def test_windows_are_consecutive_chunks() -> None:
    t = parse_targets(MULTI)
    chunks = [t.window(i, i + 4) for i in range(0, t.count, 4)]
    assert [c.count for c in chunks] == [4, 4, 1]
    assert [str(a) for c in chunks for a in c] == MULTI_ORDER
    assert chunks[1].ranges == (span("192.0.2.9", "192.0.2.9"), span("198.18.0.254", "198.18.1.0"))


def test_window_edges() -> None:
    t = parse_targets(MULTI)
    assert t.window(0, 100) == t
    assert t.window(0, t.count) == t
    assert [list(t.window(i, i + 1).addresses()) for i in range(t.count)] == [[t.at(i)] for i in range(t.count)]
    assert t.window(5, 5) == Targets()
    assert t.window(t.count, t.count + 3) == Targets()
    assert Targets().window(0, 5) == Targets()


def test_window_of_a_huge_range_stays_cheap() -> None:
    t = parse_targets("10.0.0.0/8")
    assert t.window(3 * 2**20, 4 * 2**20).ranges == (span("10.48.0.0", "10.63.255.255"),)


def test_addresses_are_the_iteration_order_as_integers() -> None:
    t = parse_targets(MULTI)
    assert [str(IPv4Address(a)) for a in t.addresses()] == MULTI_ORDER


def test_exclude() -> None:
    t = parse_targets("198.18.0.0/24 198.18.2.0/24")
    cut = parse_targets("198.18.0.0 198.18.0.10-20 198.18.0.255-198.18.2.0 198.18.2.100/30 203.0.113.1")
    left = exclude(t, cut)
    assert left.ranges == (
        span("198.18.0.1", "198.18.0.9"),
        span("198.18.0.21", "198.18.0.254"),
        span("198.18.2.1", "198.18.2.99"),
        span("198.18.2.104", "198.18.2.255"),
    )
    assert left.count == t.count - 1 - 11 - 2 - 4


def test_exclude_everything_and_nothing() -> None:
    t = parse_targets(MULTI)
    assert exclude(t, parse_targets("0.0.0.0/0")).count == 0
    assert exclude(t, Targets()) == t
    assert exclude(t, parse_targets("203.0.113.0/24")) == t
    assert exclude(Targets(), t) == Targets()


def test_exclude_matches_set_difference() -> None:
    t = parse_targets("198.18.0.0/26 198.18.0.100-150")
    cut = parse_targets("198.18.0.3 198.18.0.30-110 198.18.0.140/30 198.18.0.150-198.18.0.200")
    assert set(exclude(t, cut)) == set(t) - set(cut)


# --- bounded work per request ---------------------------------------------------------------


def test_token_cap_names_the_cap() -> None:
    at_cap = " ".join(f"198.18.{i // 256}.{i % 256}" for i in range(MAX_TARGET_TOKENS))
    assert parse_targets(at_cap).count == MAX_TARGET_TOKENS
    with pytest.raises(TargetError, match=f"at most {MAX_TARGET_TOKENS} addresses"):
        parse_targets(at_cap + " 198.18.200.1")
    with pytest.raises(TargetError, match=f"at most {MAX_TARGET_TOKENS} "):
        parse_targets(["198.18.0.1"] * (MAX_TARGET_TOKENS + 1))


def test_token_cap_stops_reading_at_the_cap() -> None:
    # Endless input: the parser must give up at the cap rather than read to the end.
    with pytest.raises(TargetError, match="too many entries"):
        parse_targets(itertools.repeat("198.18.0.1"))


def test_hostname_cap_counts_distinct_names() -> None:
    names = [f"h{i}.test" for i in range(MAX_HOSTNAMES)]
    t = parse_targets(names * 3, resolve=lambda host: ["198.18.1.1"])
    assert t.count == 1
    with pytest.raises(TargetError, match=f"too many hostnames in target specification: at most {MAX_HOSTNAMES}"):
        parse_targets([*names, "one-more.test"], resolve=lambda host: ["198.18.1.1"])


def test_hostile_tokens_give_short_errors() -> None:
    for token in ["a" * 10**6, "1" * 10**6, "198.18.0.1-" + "9" * 5000, "1." * 10**5 + "1", "::" + "f" * 10**5]:
        with pytest.raises(TargetError) as info:
            parse_targets(token, resolve=unresolvable)
        assert len(str(info.value)) < 200, str(info.value)[:300]


class Stuck:
    """A resolver that answers only when released, as one waiting on a dead name server does.
    It records the thread each lookup ran in."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.threads.append(threading.current_thread().name)
        if host.startswith("slow"):
            self.release.wait(30)
        return ["198.18.1.1"]


def test_a_hostname_past_the_deadline_is_named() -> None:
    stuck = Stuck()
    started = time.monotonic()
    try:
        with pytest.raises(TargetError, match=r"^hostname 'slow.test' did not resolve within 0.3 s$"):
            parse_targets("fast.test slow.test", resolve=stuck, deadline=0.3)
        # Not the 30 s the resolver would have taken.
        assert time.monotonic() - started < 10
    finally:
        stuck.release.set()
    assert all(name.startswith("netscand-resolve") for name in stuck.threads)


def test_names_resolving_in_time_are_all_used() -> None:
    stuck = Stuck()
    t = parse_targets("198.18.0.1 fast.test other.test", resolve=stuck, deadline=5)
    assert t.ranges == (span("198.18.0.1", "198.18.0.1"), span("198.18.1.1", "198.18.1.1"))


def test_async_parse_waits_without_blocking_the_loop_or_its_executor() -> None:
    stuck = Stuck()

    async def scenario() -> tuple[int, str]:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            await parse_targets_async("slow.test", resolve=stuck, deadline=0.3)
        except TargetError as exc:
            message = str(exc)
        stop.set()
        await ticker
        return ticks, message

    try:
        ticks, message = asyncio.run(scenario())
    finally:
        stuck.release.set()
    assert message == "hostname 'slow.test' did not resolve within 0.3 s"
    assert ticks >= 5  # the loop ran while the resolver was stuck
    assert stuck.threads and all(name.startswith("netscand-resolve") for name in stuck.threads)


def test_async_parse_resolves() -> None:
    t = asyncio.run(parse_targets_async(["198.18.0.0/30", "web.test"], resolve=fake_dns))
    assert t == parse_targets(["198.18.0.0/30", "web.test"], resolve=fake_dns)


@given(st.one_of(st.text(max_size=80),
                 st.text(alphabet="0123456789./-, :abc", max_size=60),
                 st.lists(st.text(alphabet="0123456789./- ", max_size=25), max_size=5)))
def test_any_input_gives_targets_or_a_target_error(spec: str | list[str]) -> None:
    try:
        t = parse_targets(spec, resolve=unresolvable)
    except TargetError as exc:
        assert "\n" not in str(exc)
    else:
        assert t.count >= 1


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), min_size=1, max_size=8),
       st.integers(-5, 400), st.integers(-5, 400))
def test_window_is_a_slice_of_the_addresses(spans: list[tuple[int, int]], start: int, stop: int) -> None:
    t = Targets(tuple((lo, lo + size) for lo, size in spans))
    assert list(t.window(start, stop).addresses()) == list(t.addresses())[max(start, 0):max(stop, 0)]
