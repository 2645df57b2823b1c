"""netscand: network discovery and port-scanning daemon."""

__version__ = "0.1.0"
