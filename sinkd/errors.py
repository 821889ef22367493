"""The one exception tree of sinkd.

Owns every exception type sinkd raises on purpose. Bad mail is never an exception (it is a
``Finding``); exceptions mean bad configuration, broken infrastructure or a bug.

    SinkdError
    ├── ProfileError (ValueError)       a profile file or a reference in it is invalid
    ├── ConfigError (ValueError)        a command-line option or environment variable is invalid
    ├── InputError (ValueError)         a message file given to the CLI cannot be read
    ├── BackendError (OSError)          an outside service (spamd) failed or timed out
    ├── UndeclaredCode (ValueError)     a filter built a finding code it does not declare (a bug)
    ├── HttpApiError                    sinkd's HTTP API answered with an error (the client)
    │   └── HttpApiUnreachable (ConnectionError)  it did not answer at all
    └── StoreError
        ├── NotFound (LookupError)      no stored message has that id
        └── DeliveryStateUnavailable    the shared delivery state (PostgreSQL) cannot be reached
"""

from __future__ import annotations

from typing import Any


class SinkdError(Exception):
    """Base of every error sinkd raises on purpose."""


class ProfileError(SinkdError, ValueError):
    """A profile is invalid. ``str()`` names the file, the field path and, where known, the line."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ConfigError(SinkdError, ValueError):
    """A command-line option or ``SINKD_*`` variable is invalid."""


class InputError(SinkdError, ValueError):
    """An input file (a message to check) cannot be read."""


class BackendError(SinkdError, OSError):
    """An outside service a filter relies on failed; the filter turns it into a finding."""


class UndeclaredCode(SinkdError, ValueError):
    """A filter built a finding whose code it does not declare in its ``codes``: a sinkd bug,
    which the engine records as the filter's error finding."""


class HttpApiError(SinkdError):
    """sinkd's HTTP API answered ``status`` with its JSON error ``{"error", "detail"}``
    (``sinkd.testing.client``). ``status`` is None when there was no answer
    (``HttpApiUnreachable``)."""

    def __init__(self, status: int | None, error: str, detail: Any = None) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        text = error if status is None else f"HTTP {status} {error}"
        super().__init__(f"{text}: {detail}" if detail not in (None, "") else text)


class HttpApiUnreachable(HttpApiError, ConnectionError):
    """No answer from sinkd's HTTP API: connection refused, timed out or cut."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, "unreachable", detail)


class StoreError(SinkdError):
    """The message store failed."""


class NotFound(StoreError, LookupError):
    """No stored message has the requested id."""


class DeliveryStateUnavailable(StoreError):
    """The delivery state several instances share in PostgreSQL (greylist triplets, rate
    windows) could not be read or written: the filter that asked answers 451 4.3.5 rather than
    decide without it."""


class PolicyImportError(SinkdError, ValueError):
    """A configuration given to ``sinkd profiles import`` cannot be read or parsed; ``str()``
    names the file and, where known, the line. ``--strict`` also raises it for an item the
    importer could not translate."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
