"""Admission and the queue as units, over a real SQLite store in a temporary directory: what a
start request becomes (a stored queued scan and its queue entry), idempotency, each owner's
places in the queue, and the policy applied at admission and again when a queued scan starts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from netscand.config import PolicyConfig
from netscand.scan.admission import QUEUE_RETRY_AFTER_S, Admission, Claims
from netscand.scan.errors import ScanError
from netscand.scan.events import Events
from netscand.scan.limits import CurrentLimits, Limits
from netscand.scan.policy import Policy, PolicyError
from netscand.scan.profiles import ScanRequest
from netscand.scan.queue import Queued, ScanQueue, recheck
from netscand.scan.targets import parse_targets
from netscand.store import Store, sites
from netscand.store.threads import StoreThreads

T = TypeVar("T")


def policy(**changes: Any) -> Policy:
    return Policy.from_config(PolicyConfig(**{
        "allowed_targets": ["198.18.0.0/15"], "excluded_targets": ["198.18.0.0/30"],
        "socket_only_targets": ["198.19.0.0/16"], "max_target_addresses": 1024, "max_rate": 5000.0, **changes}))


def limits() -> Limits:
    return Limits(rate=2000.0, retries=1, max_running=1, policy=policy(), max_queued_per_owner=2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "netscand.db")
    yield store
    store.close()


@pytest.fixture
def admission(store: Store) -> Admission:
    io = StoreThreads()
    return Admission(store, io, Claims(), CurrentLimits(limits()), Events(store, io))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def admit(admission: Admission, target: str = "198.18.1.0/29", owner: str | None = "alice",
                key: str | None = None, remote: bool = False, **request: Any) -> tuple[dict, Queued | None]:
    return await admission.admit(ScanRequest(target, **request), owner, key, remote)


def refusal(admission: Admission, **kwargs: Any) -> ScanError:
    with pytest.raises(ScanError) as caught:
        run(admit(admission, **kwargs))
    return caught.value


def test_an_admitted_scan_is_stored_queued_with_the_targets_the_policy_leaves(
        admission: Admission, store: Store) -> None:
    site = store.call("", sites.create, "lab")["id"]
    row, queued = run(admit(admission, "198.18.0.0/29", profile="quick", site_id=site))
    assert queued is not None and queued.id == row["id"] and queued.owner == "alice" and not queued.remote
    assert store.get_scan(row["id"]) == row
    assert (row["status"], row["target"], row["profile"], row["site_id"]) == ("queued", "198.18.0.0/29", "quick", site)
    assert row["options"] == {"remote": False, "excluded_addresses": 4}  # 198.18.0.0/30 is excluded
    assert queued.spec.targets == parse_targets("198.18.0.4-198.18.0.7")
    assert queued.spec.rate == 2000.0 and admission.claims.waiting == {"alice": 1}


def restarted(admission: Admission, **changes: Any) -> Admission:
    """The next control process's admission over the same store, its limits changed by `changes`."""
    fresh = limits()
    return Admission(admission.store, admission.io, Claims(), CurrentLimits(Limits(**{**fresh.__dict__, **changes})),
                     admission.events)


def test_a_queued_scan_is_queued_again_after_a_restart_as_it_was_accepted(admission: Admission, store: Store) -> None:
    row, queued = run(admit(admission, "198.18.0.0/29", owner="ci", remote=True, profile="custom",
                            ports=["22", "80-90"], udp_ports=["53"], retries=0, rate=1500.0))
    assert queued is not None
    after = restarted(admission)
    again = run(after.requeue(store.get_scan(row["id"])))
    assert (again.id, again.owner, again.remote, again.request) == (row["id"], "ci", True, queued.request)
    assert again.spec == queued.spec
    assert after.claims.waiting == {"ci": 1}  # its place in the queue, taken back
    # Even beyond the owner's limit: it was accepted once, and is no new request.
    for _ in range(3):
        run(after.requeue(store.get_scan(row["id"])))
    assert after.claims.waiting == {"ci": 4}


def test_a_queued_scan_the_policy_of_now_refuses_is_not_queued_again(admission: Admission, store: Store) -> None:
    row, _ = run(admit(admission, "198.18.1.0/29", remote=True))
    after = restarted(admission, policy=policy(excluded_targets=["198.18.1.0/24"]))
    with pytest.raises(ScanError) as caught:
        run(after.requeue(store.get_scan(row["id"])))
    assert caught.value.status == 403 and not after.claims.waiting
    # Only a remote request meets the socket-only targets; a row that does not say (stored by
    # an earlier version) is taken for one.
    local, _ = run(admit(admission, "198.19.1.0/29"))
    legacy = store.get_scan(local["id"])
    assert run(restarted(admission).requeue(legacy)).remote is False
    legacy["options"].pop("remote")
    with pytest.raises(ScanError):
        run(restarted(admission).requeue(legacy))


def test_a_replayed_key_answers_with_its_scan_and_takes_no_place(admission: Admission, store: Store) -> None:
    first, _ = run(admit(admission, key="nightly"))
    again, queued = run(admit(admission, key="nightly"))
    assert queued is None and again["id"] == first["id"]
    assert admission.claims.waiting == {"alice": 1}
    other, queued = run(admit(admission, owner="bob", key="nightly"))  # keys are per owner
    assert queued is not None and other["id"] != first["id"]


def test_a_key_reused_with_another_request_is_refused(admission: Admission) -> None:
    run(admit(admission, key="nightly"))
    exc = refusal(admission, target="198.18.2.0/29", key="nightly")
    assert (exc.status, exc.field) == (422, "Idempotency-Key")


def test_concurrent_starts_with_one_key_store_one_scan(admission: Admission, store: Store) -> None:
    async def both() -> list[tuple[dict, Queued | None]]:
        return list(await asyncio.gather(admit(admission, key="k"), admit(admission, key="k")))
    results = run(both())
    assert len({row["id"] for row, _ in results}) == 1
    assert [q is not None for _, q in results].count(True) == 1
    assert store.list_scans(1, 10, None, None)[1] == 1 and admission.claims.waiting == {"alice": 1}


def test_an_owner_has_max_queued_per_owner_places(admission: Admission) -> None:
    run(admit(admission))
    run(admit(admission))
    exc = refusal(admission)
    assert exc.status == 429 and exc.headers == {"Retry-After": str(QUEUE_RETRY_AFTER_S)}
    assert "alice already has 2 scans queued or starting" in exc.detail
    run(admit(admission, owner="bob"))  # the others' places are theirs
    assert admission.claims.waiting == {"alice": 2, "bob": 1}


@pytest.mark.parametrize(("kwargs", "status", "field"), [
    ({"target": "198.18.1.300"}, 422, "target"),
    ({"target": "192.0.2.0/24"}, 403, "target"),  # outside the allowed targets
    ({"target": "198.18.0.0/30"}, 403, "target"),  # every address excluded
    ({"target": "198.18.0.0/21"}, 422, "target"),  # over max_target_addresses
    ({"target": "198.19.0.1", "remote": True}, 403, "target"),  # socket-only, asked for over HTTPS
    ({"rate": 6000.0}, 422, "rate"),
])
def test_a_refused_start_says_why_and_gives_its_place_back(
        admission: Admission, store: Store, kwargs: dict, status: int, field: str) -> None:
    exc = refusal(admission, **kwargs)
    assert (exc.status, exc.field) == (status, field)
    assert admission.claims.waiting == {} and store.list_scans(1, 10, None, None)[1] == 0


def test_the_socket_only_block_is_for_local_clients(admission: Admission) -> None:
    _, queued = run(admit(admission, "198.19.0.1"))
    assert queued is not None and queued.spec.targets == parse_targets("198.19.0.1")


def test_the_queue_runs_scans_in_order_and_gives_places_back_as_they_leave(admission: Admission) -> None:
    claims = admission.claims
    queue = ScanQueue(claims)
    entries = []
    for owner in ("alice", "bob", "alice"):
        _, queued = run(admit(admission, owner=owner))
        assert queued is not None
        queue.push(queued)
        entries.append(queued)
    assert len(queue) == 3 and claims.waiting == {"alice": 2, "bob": 1}
    queue.remove(entries[1].id)
    queue.remove("no-such-scan")
    assert len(queue) == 2 and claims.waiting == {"alice": 2}
    assert [queue.pop(), queue.pop()] == [entries[0], entries[2]]
    assert not queue and claims.waiting == {}


def test_a_queued_scan_is_checked_again_under_the_policy_of_now(admission: Admission) -> None:
    _, queued = run(admit(admission, "198.18.1.0/29", remote=True))
    assert queued is not None
    spec = recheck(queued, policy(excluded_targets=["198.18.1.0/30"], max_rate=500.0))
    assert spec.targets == parse_targets("198.18.1.4-198.18.1.7") and spec.rate == 500.0
    assert spec.ports == queued.spec.ports
    with pytest.raises(PolicyError, match="socket_only"):
        recheck(queued, policy(socket_only_targets=["198.18.1.0/24"]))
    with pytest.raises(PolicyError, match="outside the allowed targets"):
        recheck(queued, policy(allowed_targets=["198.19.0.0/16"]))
