"""The one error of an import: which file, which record in it, and why it was refused."""

from __future__ import annotations


class ImportRefused(ValueError):
    """A file the importer will not load; nothing of the import it belongs to is kept."""

    def __init__(self, file: str, record: str | None, reason: str) -> None:
        self.file = file
        self.record = record  # the CVE id, or "[index]" when the record has no readable id
        self.reason = reason
        where = f"{file}: {record}" if record else file
        super().__init__(f"{where}: {reason}")


class CveStoreError(Exception):
    """The CVE database could not be opened, read or written (its path and SQLite's words)."""


class SyncError(Exception):
    """A file `netscand cve sync` could not fetch: its URL and why."""
