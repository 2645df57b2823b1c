"""Host names by reverse DNS through the system resolver (nsswitch: /etc/hosts, DNS, ...).

getnameinfo blocks, so lookups run in threads, a few at a time, each bounded by a timeout: a
slow resolver delays names, never the scan or the API.
"""

from __future__ import annotations

import asyncio
import socket

NI_NAMEREQD = socket.NI_NAMEREQD  # an error, not the address echoed back, when there is no name


async def reverse_dns(ips: list[str], concurrency: int = 16, timeout: float = 2.0) -> dict[str, str]:
    """Name per address, for the addresses that have one."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(concurrency)

    async def one(ip: str) -> tuple[str, str | None]:
        async with limit:
            try:
                name, _ = await asyncio.wait_for(
                    loop.run_in_executor(None, socket.getnameinfo, (ip, 0), NI_NAMEREQD), timeout)
            except (OSError, asyncio.TimeoutError):
                return ip, None
            return ip, name

    return {ip: name for ip, name in await asyncio.gather(*(one(ip) for ip in ips)) if name}
