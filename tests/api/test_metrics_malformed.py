"""/metrics: frames the engine dropped as malformed, by reason, summed over the workers."""

from __future__ import annotations

from netscand.engine.shm import MALFORMED
from tests.api.conftest import Api, scrape


def test_malformed_frames_are_summed_over_workers_by_reason(engine_api: Api) -> None:
    shared = engine_api.orchestrator.dispatcher.shared
    counts = [[0] * len(MALFORMED) for _ in range(shared.workers)]
    counts[0][MALFORMED.index("truncated")] = 5
    counts[1][MALFORMED.index("truncated")] = 2
    counts[1][MALFORMED.index("bad_checksum")] = 1
    for w, row in enumerate(counts):
        shared.set_malformed(w, row)
    samples = scrape(engine_api.unix())
    got = {dict(labels)["reason"]: v for (name, labels), v in samples.items()
           if name == "netscand_frames_malformed_total"}
    assert got == {"truncated": 7, "bad_ip_header": 0, "bad_tcp_header": 0, "bad_icmp_quote": 0,
                   "bad_arp": 0, "bad_checksum": 1, "parser_error": 0}
