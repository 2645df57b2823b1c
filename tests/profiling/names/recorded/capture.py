"""Re-records snmp-netsnmp.bin: net-snmp's answer to the snmp module's own GetRequest.

Run inside a throwaway network namespace where snmpd serves 127.0.0.1:161 (see README.md):
    ip netns exec NS python tests/profiling/names/recorded/capture.py
The request carries request-id IDENT, which the tests give parse. Record the snmpd package
version in README.md when you re-record.
"""

from __future__ import annotations

import socket
from pathlib import Path

from netscand.profiling.names import snmp

HERE = Path(__file__).parent
IDENT = 0x4E53  # "NS"


def main() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", snmp.port))
        sock.send(snmp.request("127.0.0.1", IDENT))
        data = sock.recv(65535)
    (HERE / "snmp-netsnmp.bin").write_bytes(data)
    print(f"snmp-netsnmp: {len(data)} bytes {data[:60]!r}")


if __name__ == "__main__":
    main()
