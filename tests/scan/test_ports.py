import pytest

from netscand.scan.ports import PortSpecError, parse_ports, service_name, top_ports


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
