"""The UDP ranking (netscand/data/top-udp-ports.txt, from nmap-services' open frequencies) and
the deep profile's UDP list built from it."""

from __future__ import annotations

import pytest

from netscand.engine.probes.payloads import PAYLOAD_PORTS
from netscand.scan.ports import PortSpecError, deep_udp_ports, top_udp_ports


def test_top_10_matches_nmap() -> None:
    # nmap 7.93's nmap-services, UDP entries by open frequency (the figures written beside each).
    assert top_udp_ports(10) == (631, 161, 137, 123, 138, 1434, 445, 135, 67, 53)


def test_top_1000_are_unique_valid_ports_and_n_is_a_prefix() -> None:
    ports = top_udp_ports(1000)
    assert len(set(ports)) == 1000 and all(1 <= p <= 65535 for p in ports)
    assert top_udp_ports(100) == ports[:100] and top_udp_ports(1) == (631,)


@pytest.mark.parametrize("n", [0, 1001, -1, True, 1.0, "10", None])
def test_bad_count(n: object) -> None:
    with pytest.raises(PortSpecError, match="top UDP ports count must be 1-1000"):
        top_udp_ports(n)  # type: ignore[arg-type]


def test_deep_is_the_top_100_then_the_payload_ports_below_them_by_rank_then_number() -> None:
    deep = deep_udp_ports()
    assert deep[:100] == top_udp_ports(100)
    # 3702 ranks 346th; memcached, CoAP and OpenVPN are not in the top 1000 at all: by number.
    assert deep[100:] == (3702, 1194, 5683, 11211)
    assert set(PAYLOAD_PORTS) <= set(deep) and len(set(deep)) == len(deep)
