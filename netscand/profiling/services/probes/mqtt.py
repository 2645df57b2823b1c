"""MQTT: CONNECT, then SUBSCRIBE to $SYS/broker/version, which brokers such as Mosquitto publish.

A broker that refuses anonymous clients still answers CONNECT with a CONNACK (its return code
says why), which names MQTT without a product.
"""

from __future__ import annotations

import re
import struct

from netscand.profiling.services.base import ServiceInfo, cpe, token

name = "mqtt"
ports = frozenset({1883, 8883})
tls = False

_VERSION_TOPIC = b"$SYS/broker/version"


def _packet(kind: int, body: bytes) -> bytes:
    return bytes((kind, len(body))) + body  # every body here is < 128 bytes: a one-byte length


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


# CONNECT (MQTT 3.1.1, clean session, keep-alive 30 s, client id "netscand"), SUBSCRIBE id 1, QoS 0.
payload: bytes | None = _packet(0x10, _string(b"MQTT") + b"\x04\x02\x00\x1e" + _string(b"netscand")) + _packet(
    0x82, b"\x00\x01" + _string(_VERSION_TOPIC) + b"\x00"
)

_CONNACK, _PUBLISH = 0x20, 0x30
_PRODUCTS = (("Mosquitto", "eclipse", "mosquitto", re.compile(r"mosquitto version (\S+)", re.IGNORECASE)),)


def parse(data: bytes) -> ServiceInfo | None:
    packets = list(_packets(data))
    if not packets or packets[0][0] != _CONNACK or len(packets[0][1]) != 2:
        return None
    code = packets[0][1][1]
    extra: dict[str, object] = {"connack": code}
    for kind, body in packets[1:]:
        if kind & 0xF0 == _PUBLISH and len(body) >= 2:
            topic_len = struct.unpack("!H", body[:2])[0]
            if body[2 : 2 + topic_len] != _VERSION_TOPIC:
                continue
            text = body[2 + topic_len :].decode("utf-8", "replace")[:128]  # QoS 0: no packet id
            extra["broker_version"] = text
            for product, vendor, cpe_product, pattern in _PRODUCTS:
                match = pattern.match(text)
                if match:
                    version = token(match.group(1))
                    return ServiceInfo("mqtt", product, version, cpe(vendor, cpe_product, version), None, extra)
    return ServiceInfo("mqtt", extra=extra)


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, body) of each whole packet; the remaining length is a varint of up to 4 bytes."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data) and len(out) < 16:
        kind, length, shift, i = data[offset], 0, 0, offset + 1
        while i < len(data) and shift <= 21:
            length |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not data[i - 1] & 0x80:
                break
        else:
            return out  # truncated or over-long length
        if i + length > len(data):
            return out
        out.append((kind, data[i : i + length]))
        offset = i + length
    return out
