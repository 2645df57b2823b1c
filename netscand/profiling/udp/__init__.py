"""UDP service detection: which service, product and version answers on a UDP port.

`detect_udp(targets)` asks each (ip, port) with the protocol modules here (see `base.UdpProbe`):
DNS, NTP, memcached, SSDP, SIP, TFTP and the RPC portmapper. SNMP, NetBIOS and mDNS are asked by
the name queries (profiling/names), which every profiling scan sends, so they are not here.
"""

from netscand.profiling.udp.base import UdpProbe
from netscand.profiling.udp.detect import PROBE_PORTS, PROBES, UdpResults, detect_udp

__all__ = ["PROBES", "PROBE_PORTS", "UdpProbe", "UdpResults", "detect_udp"]
