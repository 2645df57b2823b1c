import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netscand.scan.ports import (
    MAX_PORT, MAX_PORT_ENTRIES, MIN_PORT, PortSpecError, parse_ports, port_ranges, service_name, top_ports,
)


def test_single_port() -> None:
    assert parse_ports("22") == (22,)


def test_list_is_sorted_and_unique() -> None:
    assert parse_ports("443,22,80,22") == (22, 80, 443)


def test_range() -> None:
    assert parse_ports("1-1024") == tuple(range(1, 1025))


@pytest.mark.parametrize("spec", ["-", "1-65535", " - "])
def test_all_ports(spec: str) -> None:
    assert parse_ports(spec) == tuple(range(1, 65536))


def test_mixed_ports_and_ranges_overlap() -> None:
    assert parse_ports("22,80,1000-1003,1002-1005") == (22, 80, 1000, 1001, 1002, 1003, 1004, 1005)


def test_whitespace_tolerated() -> None:
    assert parse_ports(" 22 , 80,1000 - 1002 ") == (22, 80, 1000, 1001, 1002)


def test_api_list_form() -> None:
    assert parse_ports([443, 22, "1000-1002", "80"]) == (22, 80, 443, 1000, 1001, 1002)


def test_single_port_range_and_bounds() -> None:
    assert parse_ports("7-7") == (7,)
    assert parse_ports([1, 65535]) == (1, 65535)


def test_any_iterable() -> None:
    assert parse_ports(p for p in (80, 22)) == (22, 80)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ([], "empty"),
        ("22,,80", "empty entry"),
        ("22,", "empty entry"),
        ("ssh", "'ssh'"),
        ("22a", "'22a'"),
        ("0x16", "'0x16'"),
        ("+22", "'+22'"),
        ("22.0", "'22.0'"),
        ("2_2", "'2_2'"),
        ("0", "'0'"),
        ("0-10", "'0-10'"),
        ("65536", "'65536'"),
        ("1-65536", "'1-65536'"),
        ("80-22", "reversed port range '80-22'"),
        ("-5", "'-5'"),
        ("5-", "'5-'"),
        ("1-2-3", "'1-2-3'"),
        ([0], "0"),
        ([70000], "70000"),
        ([-1], "-1"),
        (["-1"], "'-1'"),
        ([True], "True"),
        ([22, False], "False"),
        ([22.0], "22.0"),
        ([None], "None"),
        (["100-10"], "reversed"),
    ],
)
def test_bad_specs(spec: object, named: str) -> None:
    with pytest.raises(PortSpecError, match="^[^\n]+$") as info:
        parse_ports(spec)  # type: ignore[arg-type]
    assert named in str(info.value)


def test_port_spec_error_is_value_error() -> None:
    assert issubclass(PortSpecError, ValueError)


def test_top_10_matches_nmap() -> None:
    assert top_ports(10) == (80, 23, 443, 21, 22, 25, 3389, 110, 445, 139)


def test_top_1000_are_unique_valid_ports() -> None:
    ports = top_ports(1000)
    assert len(ports) == 1000
    assert len(set(ports)) == 1000
    assert all(1 <= p <= 65535 for p in ports)


def test_top_n_is_a_prefix() -> None:
    assert top_ports(100) == top_ports(1000)[:100]
    assert top_ports(1) == (80,)


@pytest.mark.parametrize("n", [0, -1, 1001, True, 10.0])
def test_top_ports_bad_count(n: object) -> None:
    with pytest.raises(PortSpecError, match="1-1000"):
        top_ports(n)  # type: ignore[arg-type]


def test_service_names() -> None:
    assert service_name(22) == "ssh"
    assert service_name(80) == "http"
    assert service_name(443) == "https"


def test_service_name_missing() -> None:
    assert service_name(65535) is None


def test_every_named_port_is_a_top_port() -> None:
    top = set(top_ports(1000))
    assert all(service_name(p) is None for p in range(1, 65536) if p not in top)


# --- merged ranges: cost and cap ---------------------------------------------------------


def test_ranges_are_merged() -> None:
    assert port_ranges("80,22,23,1000-2000,1500-2500,2501") == ((22, 23), (80, 80), (1000, 2501))


def test_ranges_of_everything_many_times_is_one_range() -> None:
    # MAX_PORT_ENTRIES copies of the whole port space: one merged range, without a set of
    # 65535 ports per entry (what the old parser built).
    spec = ",".join(["1-65535"] * MAX_PORT_ENTRIES)
    assert port_ranges(spec) == ((1, 65535),)
    assert port_ranges(["1-65535"] * MAX_PORT_ENTRIES) == ((1, 65535),)


@pytest.mark.parametrize("spec", [",".join(["1-65535"] * (MAX_PORT_ENTRIES + 1)), "," * 10**6,
                                  ["22"] * (MAX_PORT_ENTRIES + 1)])
def test_too_many_entries_names_the_cap(spec: str | list[str]) -> None:
    with pytest.raises(PortSpecError, match=f"at most {MAX_PORT_ENTRIES} ") as info:
        port_ranges(spec)
    assert "\n" not in str(info.value)


def test_cap_is_checked_before_entries_past_it_are_read() -> None:
    # An endless iterable: the parser must stop reading at the cap, not after the input ends.
    with pytest.raises(PortSpecError, match="too many entries"):
        port_ranges(itertools.repeat("22"))


def test_cap_itself_is_allowed() -> None:
    ports = [str(p) for p in range(1, MAX_PORT_ENTRIES * 2, 2)]
    assert len(parse_ports(ports)) == MAX_PORT_ENTRIES


@pytest.mark.parametrize(("item", "named"), [
    pytest.param(10**5000, "an integer of 16610 bits", id="huge-int"),  # its repr would raise
    ("9" * 5000, "'99999"),
    ("1-" + "9" * 5000, "not a port number"),
    ("0" * 5000 + "22", None),
    ({"port": 22}, "a dict"),
    ("x" * 10**6, "...'"),
])
def test_hostile_entries_give_short_errors(item: object, named: str | None) -> None:
    if named is None:  # leading zeros are fine, however many
        assert port_ranges([item]) == ((22, 22),)  # type: ignore[list-item]
        return
    with pytest.raises(PortSpecError) as info:
        port_ranges([item])  # type: ignore[list-item]
    assert named in str(info.value)
    assert len(str(info.value)) < 120


_entry = st.one_of(
    st.integers(MIN_PORT, 300),
    st.integers(MIN_PORT, 300).map(str),
    st.tuples(st.integers(MIN_PORT, 300), st.integers(0, 40)).map(lambda t: f"{t[0]}-{t[0] + t[1]}"),
    st.just(MAX_PORT).map(str),
)


def _naive(items: list[int | str]) -> set[int]:
    ports: set[int] = set()
    for item in items:
        if isinstance(item, int):
            ports.add(item)
        else:
            lo, _, hi = item.partition("-")
            ports.update(range(int(lo), int(hi or lo) + 1))
    return ports


@given(st.lists(_entry, min_size=1, max_size=30))
def test_merged_ranges_equal_the_naive_set(items: list[int | str]) -> None:
    ranges = port_ranges(items)
    assert parse_ports(items) == tuple(sorted(_naive(items)))
    assert {p for lo, hi in ranges for p in range(lo, hi + 1)} == _naive(items)
    # Merged: sorted, disjoint and not even adjacent.
    assert all(a_hi + 1 < b_lo for (_, a_hi), (b_lo, _) in zip(ranges, ranges[1:]))
    assert parse_ports(",".join(map(str, items))) == parse_ports(items)


@given(st.one_of(st.text(max_size=60), st.lists(st.one_of(st.text(max_size=12), st.integers(),
                                                          st.none(), st.floats(), st.booleans()),
                                                max_size=8)))
def test_any_input_gives_ranges_or_a_port_spec_error(spec: object) -> None:
    try:
        ranges = port_ranges(spec)  # type: ignore[arg-type]
    except PortSpecError as exc:
        assert "\n" not in str(exc)
    else:
        assert ranges and all(MIN_PORT <= lo <= hi <= MAX_PORT for lo, hi in ranges)
