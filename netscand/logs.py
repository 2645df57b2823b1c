"""structlog set-up: JSON lines for the journal and log collectors, readable lines on a terminal.

`log_format` json prints one JSON object per line. When stdout is the journal (systemd's
$JOURNAL_STREAM names the device and inode of stdout itself, not merely set: a child inherits
it with whatever stdout it was given), each line starts with its syslog priority, `<6>` for
info, as sd-daemon(3) describes: journald strips the prefix and files the line under that
priority, so `journalctl -p warning` finds warnings. Anywhere else the lines stay plain JSON
Lines, which a prefix would break for every other reader. `auto` is console on a terminal and
json otherwise; `console` is always the readable form.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

# sd-daemon(3)'s SD_CRIT (2), SD_ERR (3), SD_WARNING (4), SD_INFO (6) and SD_DEBUG (7), by the
# name of the structlog method that logged the line.
PRIORITIES = {"critical": 2, "fatal": 2, "exception": 3, "error": 3, "err": 3, "warning": 4,
              "warn": 4, "info": 6, "msg": 6, "debug": 7}


def to_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal's own stream, as $JOURNAL_STREAM (device:inode) says."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor, or a closed one
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class JournalRenderer:
    """JSON with the line's syslog priority in front: `<4>{"event": ...}`."""

    def __init__(self) -> None:
        self.json = structlog.processors.JSONRenderer()

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        priority = PRIORITIES.get(method_name, PRIORITIES["info"])
        line = self.json(logger, method_name, event_dict)
        assert isinstance(line, str)  # json.dumps, its serializer, makes text (orjson would make bytes)
        return f"<{priority}>{line}"


def configure(fmt: str = "auto") -> None:
    stream = sys.stdout
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer()
    elif to_journal(stream):
        renderer = JournalRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # uvicorn's own access and error loggers would repeat what the API logs per request.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    # asyncssh logs each host key fetch's connection and whatever a stranger's server got wrong,
    # unstructured: a host key is there or not, and the result says which.
    logging.getLogger("asyncssh").setLevel(logging.CRITICAL)
