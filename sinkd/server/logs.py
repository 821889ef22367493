"""Logging set-up for the command line: text or JSON lines on standard error.

Owns the log format only; modules log through ``logging.getLogger(__name__)`` and never
configure handlers themselves.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a verdict line carries its fields under their own names."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "sinkd", None)
        if isinstance(fields, dict):
            data["event"] = "verdict"
            data.update(fields)
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


_current: tuple[LogFormat, int] | None = None  # what setup() was last called with


def current() -> tuple[LogFormat, int]:
    """The format and level in force, for processes that log like this one (workers)."""
    return _current or ("text", logging.getLogger().getEffectiveLevel())


def setup(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    global _current
    _current = (log_format, level)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command at INFO under "mail.log"; keep only its warnings.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    # aiosmtpd warns about its own deprecated attribute on every AUTH; not the user's concern.
    aiosmtpd_log.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
