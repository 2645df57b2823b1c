"""The stage after a scan's sweep: names and, where the profile connects, services, found from
the control process (which holds no capability) over ordinary sockets."""

from __future__ import annotations

from netscand.profiling.services import Detector
from netscand.scan.identify import identify
from netscand.scan.runner import ScanRun

DETECT_CONCURRENCY = 64  # connections at once for service detection, over all scans


class ProfilingStage:
    def __init__(self) -> None:
        self.detector = Detector(concurrency=DETECT_CONCURRENCY)  # one, shared by every scan

    @staticmethod
    def wanted(run: ScanRun) -> bool:
        return run.spec.profiling and bool(run.result.up_count)

    async def run(self, run: ScanRun) -> None:
        spec = run.spec
        await identify(run.result.up_hosts, self.detector, spec.detect_services, spec.host_timeout_s,
                       spec.udp_ports)
