"""Sets of integers (addresses, ports) as sorted, merged, inclusive (first, last) ranges.

One merge for every such set: the engine's policy guard, the scan's targets, ports and policy
blocks. Its cost follows the number of ranges, never how many integers they cover.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Range = tuple[int, int]
Ranges = tuple[Range, ...]  # sorted, disjoint and not touching


def merge(ranges: Iterable[Range]) -> Ranges:
    """The ranges sorted, with overlapping and adjacent ones joined (so equal sets compare equal)."""
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def of_cidrs(cidrs: Iterable[str]) -> Ranges:
    """IPv4 CIDR blocks (host bits allowed) as merged address ranges."""
    nets = (ipaddress.IPv4Network(c, strict=False) for c in cidrs)
    return merge((int(n.network_address), int(n.broadcast_address)) for n in nets)
