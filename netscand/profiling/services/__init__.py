"""Service detection: which service, product and version answers on an open TCP port.

`detect(ip, port)` for one port, `Detector(concurrency).detect_all(targets)` for many; the probe
modules in `probes/` each know one service family (see `base.Probe`).
"""

from netscand.profiling.services.base import Probe, ServiceInfo
from netscand.profiling.services.detector import Detector, detect

__all__ = ["Detector", "Probe", "ServiceInfo", "detect"]
