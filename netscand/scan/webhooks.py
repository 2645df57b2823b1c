"""The webhook sender: one task beside the scans that turns stored events into deliveries and
sends them, signed per the Standard Webhooks specification.

Each round it moves every enabled webhook's cursor over the events written since (the ones its
patterns take become delivery rows, in the same transaction), then leases the deliveries that
are due and sends them, at most webhooks.max_concurrent at once and per_webhook_concurrent of
one webhook's (a receiver that hangs holds that many places for its timeout, never every one).
An answer in 2xx delivers; any other answer (or a status that is no HTTP one), a timeout, a
refused connection, a destination outside the allowlist or a webhooks.ca_file that can no
longer be read is retried after a wait drawn at random up to a ceiling that doubles each time
(full jitter), until max_attempts; an outcome that cannot be recorded but for the store being
unavailable gives the delivery up as failed, never resends it for ever. Every store call goes through the store's threads and every send is
a task of its own, so a slow receiver holds its own delivery up, never a scan.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog
from standardwebhooks import Webhook

from netscand.config import WebhooksConfig
from netscand.scan import destinations, trust
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits
from netscand.store import Store, StoreError, schedules
from netscand.store import events as stored_events
from netscand.store import webhooks as stored
from netscand.store.threads import StoreThreads

log = structlog.get_logger()

BATCH = 500  # events read per webhook per round; a full batch means a next round at once
IDLE_S = 30.0  # longest sleep with nothing due: a safety net, events and finished sends wake it
LEASE_MARGIN_S = 30.0  # beyond an attempt's timeout: a lease outlives any attempt still running
ALWAYS_SENT = ("change.", "scan.state")  # sent even for a schedule that delivers only its changes
MAX_DOUBLINGS = 60  # of the retry wait's ceiling: past any retry_max, and 2.0 ** it stays a float


def matches(patterns: Iterable[str], type_: str) -> bool:
    """Whether an event type is taken by one of the patterns: "*", a type, or "family.*"."""
    return any(p == "*" or p == type_ or (p.endswith(".*") and type_.startswith(p[:-1])) for p in patterns)


def body(event: dict[str, Any]) -> str:
    """What the receiver gets, the Standard Webhooks payload: type, timestamp and data."""
    return orjson.dumps({"type": event["type"], "timestamp": event["at"], "data": event["data"]}).decode()


def retry_wait(cfg: WebhooksConfig, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: at random between
    retry_first and a ceiling that doubles each attempt, up to retry_max."""
    ceiling = min(cfg.retry_max, cfg.retry_first * 2.0 ** min(attempts - 1, MAX_DOUBLINGS))
    return random.uniform(cfg.retry_first, max(cfg.retry_first, ceiling))


class WebhookSender:
    def __init__(self, store: Store, io: StoreThreads, events: Events, limits: CurrentLimits) -> None:
        self.store, self.io, self.events, self.limits = store, io, events, limits
        self._sending: dict[asyncio.Task[None], str] = {}  # each send, and the webhook it is for
        self._sent = asyncio.Event()  # a send ended: its place is free for a due delivery
        # The TLS context of the settings in force, made again when a reload brings new ones (a
        # CA file replaced under the same name is read again then); the lock lets the attempts
        # that start together after a reload wait for one making of it, not each make their own.
        self._trust: tuple[WebhooksConfig, ssl.SSLContext] | None = None
        self._trust_made = asyncio.Lock()

    async def send_forever(self) -> None:
        try:
            while not self.events.closed:  # closed: the daemon is stopping
                seen = self.events.written  # an event written while the round reads wakes the next
                self._sent.clear()
                try:
                    wait = await self._round()
                except StoreError as exc:
                    log.warning("webhooks.store_unavailable", error=str(exc))
                    wait = IDLE_S
                except Exception:  # noqa: BLE001 - a round gone wrong must not end webhooks until a restart
                    log.exception("webhooks.round_crashed")
                    wait = IDLE_S
                await self._idle(wait, seen)
        finally:
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _round(self) -> float:
        """Queue what is new, start what is due; how long to wait before the next round."""
        more = await self._enqueue()
        cfg = self.limits.now.webhooks
        free = cfg.max_concurrent - len(self._sending)
        if free > 0:
            now = time.time()
            for row in await self.io.write(self.store.call, "cannot take due webhook deliveries", stored.claim_due,
                                           now, free, now + cfg.timeout + LEASE_MARGIN_S, cfg.per_webhook_concurrent,
                                           self._in_flight()):
                task = asyncio.get_running_loop().create_task(self._deliver(row))
                self._sending[task] = row["webhook_id"]
                task.add_done_callback(self._ended)
        if more:
            return 0
        if len(self._sending) >= cfg.max_concurrent:
            return IDLE_S  # a send ending wakes the next round
        # A webhook at its cap waits for a send of its own to end, which wakes the next round.
        full = [hook for hook, n in self._in_flight().items() if n >= cfg.per_webhook_concurrent]
        due = await self.io.read(self.store.call, "cannot read webhook deliveries", stored.next_due, full)
        return IDLE_S if due is None else min(IDLE_S, max(0.0, due - time.time()))

    async def _idle(self, seconds: float, seen: int) -> None:
        """Until an event is written (since the count `seen`), a send ends, or `seconds` pass."""
        if seconds <= 0:
            return
        waits = [asyncio.ensure_future(self.events.wait(seconds, seen)), asyncio.ensure_future(self._sent.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        self._sent.set()

    def _in_flight(self) -> dict[str, int]:
        """How many deliveries of each webhook are being sent."""
        return Counter(self._sending.values())

    async def _enqueue(self) -> bool:
        """Move each enabled webhook's cursor over new events, writing the deliveries its
        patterns take; whether any webhook has more events waiting."""
        more, only_changes = False, {}
        for hook in await self.io.read(self.store.call, "cannot read webhooks", stored.enabled):
            batch = await self.io.read(self.store.call, "cannot read events", stored_events.after,
                                       hook["last_seq"], BATCH)
            if not batch:
                continue
            deliveries = [{"id": f"msg_{uuid.uuid4().hex}", "seq": e["seq"], "type": e["type"], "body": body(e)}
                          for e in batch
                          if matches(hook["events"], e["type"]) and await self._wanted(e, only_changes)]
            await self.io.write(self.store.call, f"cannot queue deliveries of webhook {hook['id']}", stored.enqueue,
                                hook["id"], hook["last_seq"], batch[-1]["seq"], deliveries)
            more |= len(batch) == BATCH
        return more

    async def _wanted(self, event: dict[str, Any], only_changes: dict[str, bool]) -> bool:
        """False for a scan's progress, hosts and ports when a schedule that delivers only its
        changes started the scan (`only_changes` remembers the answer per scan for the round)."""
        scan_id = event["scan_id"]
        if scan_id is None or event["type"].startswith(ALWAYS_SENT):
            return True
        if scan_id not in only_changes:
            only_changes[scan_id] = await self.io.read(self.store.call, f"cannot read the schedule of scan {scan_id}",
                                                       schedules.delivers_only_changes, scan_id)
        return not only_changes[scan_id]

    async def _deliver(self, row: dict[str, Any]) -> None:
        cfg = self.limits.now.webhooks
        attempts = row["attempts"] + 1
        status, error = await self._attempt(row, cfg)
        try:
            outcome = _outcome(cfg, attempts, error)
            said = {"delivered": log.info, "pending": log.warning, "failed": log.error}[outcome["status"]]
            said(f"webhook.{outcome['status']}", delivery=row["id"], webhook=row["webhook_id"], attempts=attempts,
                 error=error)
            await self._record(row["id"], attempts=attempts, last_status=status, last_error=error, **outcome)
        except StoreError as exc:  # its lease ends, and it is sent again: the receiver dedupes by webhook-id
            log.warning("webhooks.store_unavailable", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - left pending, its lease would end and it would be sent for ever
            log.exception("webhook.record_crashed", delivery=row["id"])
            await self._give_up(row["id"], attempts, f"given up: its outcome could not be recorded "
                                                     f"({type(exc).__name__}: {exc})"[:500])

    async def _give_up(self, delivery_id: str, attempts: int, why: str) -> None:
        try:
            await self._record(delivery_id, status="failed", attempts=attempts, next_attempt=None, last_status=None,
                               last_error=why)
        except Exception:  # noqa: BLE001 - the task must end quietly; its lease then decides
            log.exception("webhook.give_up_failed", delivery=delivery_id)

    async def _record(self, delivery_id: str, **outcome: Any) -> None:
        await self.io.write(self.store.call, f"cannot record delivery {delivery_id}", stored.record, delivery_id,
                            **outcome)

    async def _attempt(self, row: dict[str, Any], cfg: WebhooksConfig) -> tuple[int | None, str | None]:
        """The receiver's status (None without an answer) and why it is not delivered (None if it is)."""
        try:
            async with asyncio.timeout(cfg.timeout):
                status = await self._post(row, cfg)
        except destinations.DestinationError as exc:
            return None, exc.detail
        except trust.CaFileError as exc:  # removed or spoilt since the config was loaded
            return None, str(exc)
        except TimeoutError:
            return None, f"no answer within {cfg.timeout:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}".rstrip(": ")
        except Exception as exc:  # noqa: BLE001 - whatever it was, the attempt counts: none is retried for ever
            log.exception("webhook.attempt_crashed", delivery=row["id"])
            return None, f"{type(exc).__name__}: {exc}".rstrip(": ")
        if not 100 <= status <= 599:  # h11 takes any three digits; the log's schema knows HTTP's
            return None, f"the receiver answered {status}, which is no HTTP status"
        return status, None if 200 <= status < 300 else f"the receiver answered {status}"

    async def _post(self, row: dict[str, Any], cfg: WebhooksConfig) -> int:
        """One attempt: resolve and check the destination, then POST to the addresses checked,
        the next one when one cannot be connected to."""
        target = await destinations.resolve(row["url"], cfg.allowed_destinations)
        # No proxy from the environment (the connection must go to the checked address), no
        # redirect (it would lead past the allowlist), no kept connection (each attempt connects
        # to the address its own check found): a client of its own costs the attempt nothing.
        async with httpx.AsyncClient(verify=await self._context(cfg), trust_env=False, follow_redirects=False,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            return await self._post_to(client, target, row)

    async def _context(self, cfg: WebhooksConfig) -> ssl.SSLContext:
        async with self._trust_made:
            if self._trust is None or self._trust[0] is not cfg:
                # Off the loop: the system's CAs and the CA file are read and parsed. One that
                # fails is not kept: the next attempt reads the file again, as it may be back.
                self._trust = (cfg, await asyncio.to_thread(trust.client_context, cfg.ca_file))
            return self._trust[1]

    async def _post_to(self, client: httpx.AsyncClient, target: destinations.Destination,
                       row: dict[str, Any]) -> int:
        content = row["body"].encode()
        now = datetime.now(UTC)
        headers = {"Host": target.url.netloc.decode("ascii"), "Content-Type": "application/json",
                   "webhook-id": row["id"], "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(row["secret"]).sign(row["id"], now, content)}
        for address in target.addresses[:-1]:
            try:
                return await _send(client, target, address, content, headers)
            except httpx.ConnectError as exc:
                log.info("webhook.address_unreachable", delivery=row["id"], address=str(address), error=str(exc))
        return await _send(client, target, target.addresses[-1], content, headers)


async def _send(client: httpx.AsyncClient, target: destinations.Destination, address: destinations.Address,
                content: bytes, headers: dict[str, str]) -> int:
    named = target.url.scheme == "https" and target.host != str(address)
    request = client.build_request("POST", target.at(address), content=content, headers=headers,
                                   extensions={"sni_hostname": target.host} if named else {})
    response = await client.send(request, stream=True)
    await response.aclose()  # its body is not read: a receiver can't make the daemon hold much
    return response.status_code


def _outcome(cfg: WebhooksConfig, attempts: int, error: str | None) -> dict[str, Any]:
    if error is None:
        return {"status": "delivered", "next_attempt": None}
    if attempts >= cfg.max_attempts:
        return {"status": "failed", "next_attempt": None}
    return {"status": "pending", "next_attempt": time.time() + retry_wait(cfg, attempts)}
