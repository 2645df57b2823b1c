"""Asking a rate-limited host's silent UDP ports again, at the pace its ICMP allows.

Linux answers about 6 port unreachables to a peer at once, then one a second (icmp_ratelimit:
a token bucket, burst 6, one token per 1000 ms). The scan sends its UDP probes faster than that,
so on such a host most closed ports stay silent. Here each silent port is asked once more, over
a connected socket (datagram.knock): the first CONFIRM_BURST at once (the bucket refilled while
the TCP scan and the rest of identification ran; a few tokens are left to the name queries, which
ask the same host meanwhile), then one every CONFIRM_INTERVAL_S, one port at a time. No one can
prove N closed ports on such a host faster than about N seconds; hosts are asked side by side,
so the step costs about (silent ports per host) x CONFIRM_INTERVAL_S whatever their number.

Bounds: at most CONFIRM_HOSTS hosts at once (each holds at most CONFIRM_BURST sockets), each
host's asking ends at its `host_deadline`, and the caller bounds the whole with its deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from netscand.profiling.datagram import knock

CONFIRM_BURST = 3
CONFIRM_INTERVAL_S = 1.1  # Linux refills a token every 1000 ms; the margin covers jitter
CONFIRM_WAIT_S = 1.0  # a port's answer is awaited this long: under the interval, so one at a time
CONFIRM_HOSTS = 256
Asks = dict[str, list[tuple[int, bytes]]]  # ip -> (port, datagram to send), in the order to ask
Answers = dict[tuple[str, int], str]  # (ip, port) -> "open" | "closed" | "filtered"
log = structlog.get_logger()


@dataclass(frozen=True)
class Pace:
    burst: int = CONFIRM_BURST
    interval: float = CONFIRM_INTERVAL_S
    wait: float = CONFIRM_WAIT_S
    hosts: int = CONFIRM_HOSTS


async def confirm(asks: Asks, *, host_deadline: float, pace: Pace = Pace(), found: Answers | None = None) -> Answers:
    """What each asked port answered; silent ones are left out. `found` is filled as answers
    come, so a caller that stops waiting keeps them."""
    found = {} if found is None else found
    hosts = asyncio.Semaphore(pace.hosts)
    await asyncio.gather(*(_host(ip, ports, hosts, host_deadline, pace, found) for ip, ports in asks.items()))
    return found


async def _host(ip: str, ports: list[tuple[int, bytes]], hosts: asyncio.Semaphore, deadline: float, pace: Pace,
                found: Answers) -> None:
    async with hosts:
        try:
            # The deadline counts from the host's turn: hosts queued behind others keep theirs.
            async with asyncio.timeout(deadline), asyncio.TaskGroup() as group:
                for i, (port, datagram) in enumerate(ports):
                    if i >= pace.burst:
                        await asyncio.sleep(pace.interval)
                    group.create_task(_one(ip, port, datagram, pace.wait, found))
        except TimeoutError:
            log.info("udp_confirm.host_deadline", ip=ip, asked=len(ports))


async def _one(ip: str, port: int, datagram: bytes, wait: float, found: Answers) -> None:
    state = await knock(ip, port, datagram, timeout=wait)
    if state is not None:
        found[ip, port] = state
