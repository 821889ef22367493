"""The verdict log of ``sinkd serve --verdict-log PATH``: one JSON line per stored verdict, for
CI to keep as an artifact.

Owns that file: opened for appending when the server starts, one line per record written right
after the store committed it (the same JSON object ``GET /api/v1/messages/{id}`` answers), and
closed at stop. It decides nothing and stores nothing: the store is the record a 250 promises,
so a failing write here is logged and the server goes on; the message stays stored.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sinkd.errors import ConfigError

log = logging.getLogger(__name__)


class VerdictLog:
    """An append-only JSON-lines file. Unbuffered: each line reaches the kernel in one
    ``write`` of an ``O_APPEND`` descriptor as soon as it is written, so ``tail -f`` and a CI
    step reading the file after the run see every verdict, and no half-written buffer is left
    behind by a failing write for the next line to repeat."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"--verdict-log {path}: cannot open: {exc.strerror}") from None
        self.failures = 0  # writes that failed since start (logged each time)

    def write(self, message_id: str, data: dict[str, Any]) -> None:
        """Append one record's line (its API JSON, ``data``); never raises (a failure is
        logged with the id)."""
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        try:
            # backslashreplace: a lone surrogate in some text (an octet a filter kept as it came)
            # is written as its JSON escape rather than failing the line.
            self._append((line + "\n").encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self.failures += 1
            log.error(
                "verdict log %s: could not write verdict %s (%s); it is stored all the same",
                self.path,
                message_id,
                exc.strerror or exc,
            )

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError("the verdict log is closed")
        view = memoryview(data)
        while view:  # a regular file takes it in one write; a pipe or a full disk may not
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
