"""``ServerOptions``: what the SMTP protocol and its handler need of the settings.

Owns only that record and how it is taken from ``Settings``. It must not import the protocol,
the handler or the session (all three read it), so that none of them imports another to learn
the server's options.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, fields

from sinkd.services.settings import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_RECIPIENTS,
    AuthMode,
    Settings,
)


@dataclass
class ServerOptions:
    """What the SMTP protocol needs of the settings, plus its TLS context and idle timeout.
    A server builds it from ``Settings`` with ``of``; its defaults serve tests that build a
    protocol alone."""

    hostname: str = "sinkd.localhost"
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    auth: AuthMode = "any"
    auth_user: str | None = None
    auth_password: str | None = None
    client_ip: str | None = None
    helo: str | None = None
    proxy_protocol: bool = False
    tls_context: ssl.SSLContext | None = None
    timeout: float = 300.0

    @classmethod
    def of(cls, settings: Settings, tls_context: ssl.SSLContext | None) -> ServerOptions:
        """The options of a server running with ``settings``: every field of the same name,
        so a setting the protocol needs is added in one place (``Settings``)."""
        taken = {
            f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)
        }
        return cls(**taken, tls_context=tls_context)
