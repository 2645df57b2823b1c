"""Prometheus metrics, served at /metrics in the text exposition format 0.0.4.

prometheus_client renders them, from a registry of this app's own: the library's global one
would mix the counters of every app in a process (tests run several) and of anything else that
imports the library. Everything but the request counts is read at scrape time, from the store
and from the engine's health (scan/health.py), so no hot path updates a metric: the workers
already keep their counters in shared memory, and a scrape reads a few rows and one count per
scan status.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from netscand.scan.health import MALFORMED_REASONS, EngineHealth, WorkerState

if TYPE_CHECKING:
    from netscand.store import Store

# What generate_latest writes. Spelled out: the library's CONTENT_TYPE_LATEST now names text
# format 1.0.0, which only newer Prometheus servers read.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RATE_WINDOW_S = 1.0  # a rate over less time than this is mostly noise; keep the last one


class _Rate:
    """Per-second rate of a counter between two looks at it, at least RATE_WINDOW_S apart.

    Prometheus would rather compute rates itself (rate(netscand_probes_sent_total[1m])); this is
    for a glance at one scrape, like the progress line of `netscand scan`.
    """

    def __init__(self, value: int) -> None:
        self.at, self.value, self.per_second = time.monotonic(), value, 0.0

    def update(self, value: int) -> float:
        now = time.monotonic()
        if now - self.at >= RATE_WINDOW_S:
            # A restarted daemon starts its counters again; that is no negative rate.
            self.per_second = max(value - self.value, 0) / (now - self.at)
            self.at, self.value = now, value
        return self.per_second


class Metrics:
    def __init__(self, store: Store, health: EngineHealth) -> None:
        self.store, self.health = store, health
        self.requests: Counter[tuple[str, int]] = Counter()  # (listener, status code)
        workers = health.workers()
        self._probes = _Rate(sum(w.sent for w in workers))
        self._replies = _Rate(sum(w.matched for w in workers))
        # Collected only when scraped (auto_describe would query the store at registration).
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def request(self, listener: str, status: int) -> None:
        self.requests[(listener, status)] += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        yield self._scans()
        workers = self.health.workers()
        yield from _per_worker(workers)
        yield _malformed(workers)
        yield GaugeMetricFamily("netscand_probes_per_second",
                                "Probes sent per second by all workers, since the previous scrape (>= 1 s).",
                                value=self._probes.update(sum(w.sent for w in workers)))
        yield GaugeMetricFamily("netscand_replies_per_second",
                                "Replies matched per second by all workers, since the previous scrape (>= 1 s).",
                                value=self._replies.update(sum(w.matched for w in workers)))
        yield self._requests()

    def _scans(self) -> Metric:
        scans = GaugeMetricFamily("netscand_scans", "Scans in the store, by status.", labels=["status"])
        for status, count in self.store.scan_counts().items():
            scans.add_metric([status], count)
        return scans

    def _requests(self) -> Metric:
        requests = CounterMetricFamily("netscand_api_requests", "API requests answered, by listener "
                                       "and status code.", labels=["listener", "code"])
        for (listener, code), count in sorted(self.requests.items()):
            requests.add_metric([listener, str(code)], count)
        return requests


# What each worker's row says, labelled by the worker's index: (name, help, type, value).
Family = type[CounterMetricFamily] | type[GaugeMetricFamily]
_PER_WORKER: tuple[tuple[str, str, Family, Callable[[WorkerState], int]], ...] = (
    ("netscand_probes_sent", "Probes the engine workers sent.", CounterMetricFamily, lambda w: w.sent),
    ("netscand_replies_received", "Replies the engine workers matched to a probe of theirs.",
     CounterMetricFamily, lambda w: w.matched),
    ("netscand_worker_restarts", "Times the supervisor replaced an engine worker.", CounterMetricFamily,
     lambda w: w.restarts),
    ("netscand_worker_up", "1 while an engine worker's heartbeat is fresh.", GaugeMetricFamily,
     lambda w: int(w.alive)),
)


def _per_worker(workers: list[WorkerState]) -> Iterator[Metric]:
    for name, text, family, value in _PER_WORKER:
        metric = family(name, text, labels=["worker"])
        for w in workers:
            metric.add_metric([str(w.index)], value(w))
        yield metric


def _malformed(workers: list[WorkerState]) -> Metric:
    malformed = CounterMetricFamily("netscand_frames_malformed", "Received frames the engine dropped unread, "
                                    "by reason (summed over workers).", labels=["reason"])
    for reason in MALFORMED_REASONS:
        malformed.add_metric([reason], sum(w.malformed[reason] for w in workers))
    return malformed
