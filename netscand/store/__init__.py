"""SQLite storage for scans, their results and API tokens. Imports no other netscand layer."""

from netscand.store.errors import StoreError
from netscand.store.store import Store

__all__ = ["Store", "StoreError"]
