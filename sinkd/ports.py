"""What the pure core may ask of the outside world, as interfaces only.

Owns the ``Lookups`` bundle handed to every filter. Real adapters (DNS, spamd) implement these
elsewhere and are injected by the runtime; the core never opens a socket or a file itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lookups:
    """Injected lookups for network-backed filters.

    The filter kinds of the foundation need none; the DNS resolver (SPF, DKIM, DMARC, DNSBL)
    and the spamd client are added here as typed protocol fields by the issues that bring
    those kinds, so that tests can pass fakes and the core stays free of I/O.
    """


NO_LOOKUPS = Lookups()
