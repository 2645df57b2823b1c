"""Network-namespace lab: a scanner, a bridge, a router and seeded hosts with known services.

Used by tests, benchmarks and the demo; never by the daemon.
"""

from netscand.lab.errors import LabError
from netscand.lab.lab import DEFAULT_STATE_DIR, Lab, status

__all__ = ["DEFAULT_STATE_DIR", "Lab", "LabError", "status"]
