"""The one error the scan layer answers a request with; the API turns it into problem+json."""

from __future__ import annotations


class ScanError(Exception):
    """A request the orchestrator refuses."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.field = status, title, detail, field
        self.headers = headers or {}


def not_found(scan_id: str) -> ScanError:
    # Also what another owner's scan looks like to a caller: not even its existence shows.
    return ScanError(404, "Scan not found", f"no scan with id {scan_id}")
