"""sinkd: a local SMTP test sink that judges mail like a corporate filter.

The public surface is re-exported here one name at a time; everything else may change.
"""

from __future__ import annotations

from sinkd.core.model import (
    Action,
    Category,
    ClientIdentity,
    Disposition,
    Envelope,
    Finding,
    Reply,
    Stage,
    Verdict,
    VerdictAction,
)
from sinkd.errors import ConfigError, InputError, NotFound, ProfileError, SinkdError, StoreError

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Category",
    "ClientIdentity",
    "ConfigError",
    "Disposition",
    "Envelope",
    "Finding",
    "InputError",
    "NotFound",
    "ProfileError",
    "Reply",
    "SinkdError",
    "Stage",
    "StoreError",
    "Verdict",
    "VerdictAction",
    "__version__",
]
