"""Host names by reverse DNS through the system resolver (nsswitch: /etc/hosts, DNS, ...).

getnameinfo blocks, so lookups run in threads of their own pool, a few at a time, each bounded
by a timeout: a slow resolver delays names, never the scan, the API, or the default executor's
other work (a lookup past its timeout keeps its thread until the resolver gives up).
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

NI_NAMEREQD = socket.NI_NAMEREQD  # an error, not the address echoed back, when there is no name
THREADS = 16
_RESOLVER = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="netscand-rdns")


async def reverse_dns(ips: list[str], concurrency: int = THREADS, timeout: float = 2.0,
                      found: dict[str, str] | None = None) -> dict[str, str]:
    """Name per address, for the addresses that have one.

    `found` is filled as names come, so a caller that stops waiting keeps what came.
    """
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(concurrency)
    found = {} if found is None else found

    async def one(ip: str) -> None:
        async with limit:
            try:
                name, _ = await asyncio.wait_for(
                    loop.run_in_executor(_RESOLVER, socket.getnameinfo, (ip, 0), NI_NAMEREQD), timeout)
            except (OSError, asyncio.TimeoutError):
                return
            if name:
                found[ip] = name

    await asyncio.gather(*(one(ip) for ip in ips))
    return found
