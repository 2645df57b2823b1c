"""The formats a scan's result and the inventory's devices can be exported in (scan/exports.py
writes them): their names, media types and file extensions alone, so that what only names them
(netscanctl's --format choices) does without the writers and the result model behind them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    extension: str


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("nmap-xml", "application/xml", "xml"),
    Format("csv", "text/csv", "csv"),
    Format("jsonl", "application/x-ndjson", "jsonl"),
)}
DEVICE_FORMATS = ("csv", "jsonl")  # what a list of devices without a scan can be written as
